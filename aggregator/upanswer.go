package aggregator

import (
	"context"
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// checkUpstream turns upstream's outcome for a round of n requests into
// the round's answer, or the error its requests get.
func (e *Engine) checkUpstream(sig []byte, err error, root ksi.Imprint, level byte, n int) (*round.Answer, error) {
	var ans *round.Answer
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w: %v", ErrUpstreamTime, err)
	case err != nil:
		err = fmt.Errorf("%w: %v", ErrUpstream, err)
	default:
		if ans, err = answerOf(sig, root, level); err != nil {
			err = fmt.Errorf("%w: %v", ErrUpstream, err)
		}
	}
	if err != nil {
		e.cfg.Metrics.upstreamError()
		e.upstreamLog.failed(e.log, err, n)
		return nil, err
	}
	e.upstreamLog.ok(e.log)
	return ans, nil
}

// answerOf checks upstream's signature is for our root and splits it.
func answerOf(sig []byte, root ksi.Imprint, level byte) (*round.Answer, error) {
	s, err := ksi.ParseSignature(sig)
	if err != nil {
		return nil, err
	}
	if !s.DocumentHash().Equal(root) {
		return nil, errors.New("upstream signed another hash")
	}
	return round.AnswerFromSignature(s, level)
}
