package engine

import (
	"github.com/switchboard/switchboard/engine/esl"
)

// newESLPart builds call control from e.cfg: each call runs its flow on the script generation that was
// serving when the call arrived. nil, nil when the part is disabled.
func newESLPart(e *Engine) (Part, error) {
	cfg := e.cfg.ESL
	if !cfg.Enabled {
		return nil, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.MaxCalls = e.connBudget().capFor(e.log.WithField("part", "esl"), "esl.max_calls", cfg.MaxCalls, fdPerESLCall)
	// New adds part=esl to the entry it is given.
	return esl.New(cfg, esl.Options{Flows: e.eslLua.Flows(e.lua), Log: e.log, Metrics: e.metrics})
}
