-- The input tokens a provider served from its prompt cache (Gemini's cachedContentTokenCount,
-- OpenAI's usage.prompt_tokens_details.cached_tokens), a part of input_tokens billed at a lower
-- price. 0 for annotations stored before it was recorded.
ALTER TABLE annotations ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
