package gemini

import (
	"testing"

	"github.com/mhannotator/mha/internal/llm/providertest"
)

// The outcome classes against the in-repo fake provider, which renders the API's bodies on its
// own: a second opinion on the wire format besides the canned replies of gemini_test.go.

func TestAgainstTheFakeServer(t *testing.T) { providertest.AgainstTheFakeServer(t, provider) }

func TestAgainstTheFakeServerSentRequestAndQuota(t *testing.T) {
	providertest.TheFakeServerSeesTheRequestAndCountsQuota(t, provider)
}

func TestCachedTokensAreRead(t *testing.T) { providertest.CachedTokensAreRead(t, provider) }
