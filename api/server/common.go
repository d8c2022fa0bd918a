package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/api/events"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/runs"
)

// Events is the live side the server needs: the runs' and pools' current state (kept up to
// date from change feeds, so reading it costs no Temporal call), the WebSocket, and a nudge
// after a control so the change is pushed without waiting for the next look at Temporal.
type Events interface {
	Runs() []events.Run
	RunByID(id string) (events.Run, bool)
	Quota() []events.QuotaView
	Overview() events.Overview
	ServeWS(w http.ResponseWriter, r *http.Request)
	Ready() bool
	Refresh(ids ...string)
}

// Selection names runs the way starter's flags do.
type Selection struct {
	All       bool   `json:"all,omitempty" doc:"every run of the config"`
	Annotator string `json:"annotator,omitempty" doc:"the runs of one annotator" maxLength:"64" example:"1"`
	Domain    string `json:"domain,omitempty" doc:"the runs of one domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal,"`
}

func (sel Selection) selector() runs.Selector {
	return runs.Selector{All: sel.All, Annotator: sel.Annotator, Domain: sel.Domain}
}

// pairs resolves sel against cfg; a bad selection is a 422 naming the field.
func (s *Server) pairs(cfg *config.Config, sel Selection) ([]runs.Pair, error) {
	pairs, err := s.controller(cfg).Select(sel.selector())
	if err != nil {
		msg := err.Error()
		loc := "body"
		switch {
		case strings.HasPrefix(msg, "--annotator: "):
			loc, msg = "body.annotator", strings.TrimPrefix(msg, "--annotator: ")
		case strings.HasPrefix(msg, "--domain: "):
			loc, msg = "body.domain", strings.TrimPrefix(msg, "--domain: ")
		default:
			msg = strings.NewReplacer("--all", "all", "--annotator N", "annotator", "--domain D", "domain", "--annotator", "annotator", "--domain", "domain").Replace(msg)
		}
		return nil, huma.Error422UnprocessableEntity("the selection names no run", &huma.ErrorDetail{Location: loc, Message: msg, Value: sel})
	}
	return pairs, nil
}

// configError turns a config that cannot be read or would not validate into problem details
// with one entry per bad setting, with the config loader's own messages.
func configError(err error, location string) error {
	var invalid *config.ValidationError
	if errors.As(err, &invalid) {
		details := make([]error, len(invalid.Problems))
		for i, p := range invalid.Problems {
			loc := location
			if p.Path != "" {
				loc += "." + p.Path
			}
			details[i] = &huma.ErrorDetail{Location: loc, Message: p.Reason, Value: p.Value}
		}
		return huma.Error422UnprocessableEntity("the config is not valid", details...)
	}
	return huma.Error500InternalServerError("the config cannot be read: " + err.Error())
}

// currentConfig reads the config for a request; a config broken on disk is the server's
// problem, not the caller's.
func (s *Server) currentConfig() (*config.Config, error) {
	cfg, err := s.config()
	if err != nil {
		return nil, huma.Error503ServiceUnavailable("the config on disk cannot be used: " + err.Error())
	}
	return cfg, nil
}
