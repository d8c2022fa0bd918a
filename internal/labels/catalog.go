package labels

// Code is one label a domain can take, with the meaning the prompts explain to the model.
type Code struct {
	Code        string
	Description string
}

// Catalog lists each coded domain's labels. Redressal has none: its label is free text.
var Catalog = map[Domain][]Code{
	Urgency: {
		{"LEVEL_0", "self-help: no professional contact needed now; resources and self-care suffice"},
		{"LEVEL_1", "low: routine appointment within 3-4 weeks"},
		{"LEVEL_2", "moderate: appointment within 1-2 weeks"},
		{"LEVEL_3", "urgent: contact within 2-3 days"},
		{"LEVEL_4", "critical: immediate response within 24 hours (risk to life or safety)"},
	},
	Therapeutic: {
		{"TA-1", "cognitive behavioural therapy (CBT)"},
		{"TA-2", "dialectical behaviour therapy (DBT)"},
		{"TA-3", "trauma-focused therapy (EMDR, CPT)"},
		{"TA-4", "interpersonal therapy (IPT)"},
		{"TA-5", "acceptance and commitment therapy (ACT)"},
		{"TA-6", "family systems therapy"},
		{"TA-7", "psychoeducation"},
		{"TA-8", "motivational interviewing"},
		{"TA-9", "supportive counselling"},
	},
	Intensity: {
		{"INT-1", "self-guided resources"},
		{"INT-2", "brief intervention, 1-3 sessions"},
		{"INT-3", "short-term therapy, 6-12 sessions"},
		{"INT-4", "long-term therapy, more than 12 sessions"},
		{"INT-5", "intensive outpatient programme"},
	},
	Adjunct: {
		{"ADJ-1", "psychiatric consultation (medication review)"},
		{"ADJ-2", "medical referral"},
		{"ADJ-3", "academic accommodations"},
		{"ADJ-4", "peer support group"},
		{"ADJ-5", "crisis hotline and safety plan"},
		{"ADJ-6", "substance-use treatment"},
		{"ADJ-7", "nutritional counselling"},
		{"ADJ-8", "occupational therapy or skills training"},
	},
	Modality: {
		{"MOD-1", "individual therapy"},
		{"MOD-2", "group therapy"},
		{"MOD-3", "family therapy"},
		{"MOD-4", "couples therapy"},
		{"MOD-5", "online or teletherapy"},
		{"MOD-6", "workshop or skills group"},
	},
}
