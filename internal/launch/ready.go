package launch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/flotilla-kv/flotilla/internal/poll"
)

// probeInterval is how often WaitHTTP asks; probeTimeout bounds one
// request, so a paused server costs a round, not the whole wait.
const (
	probeInterval = 50 * time.Millisecond
	probeTimeout  = 2 * time.Second
)

// WaitHTTP waits until GET url answers 200 (a /readyz, etcd's /health),
// asking every 50 ms. alive, when not nil, is checked on every round: an
// error from it (the process exited, the container stopped) ends the
// wait at once with that error. ctx bounds the wait; on its end WaitHTTP
// returns the last answer's error wrapped with ctx.Err(). Safe for
// concurrent use.
func WaitHTTP(ctx context.Context, url string, alive func() error) error {
	var dead error
	err := poll.Until(ctx, 0, probeInterval, func(ctx context.Context) error {
		if alive != nil {
			if dead = alive(); dead != nil {
				return nil // stop polling; dead is the answer
			}
		}
		return httpOK(ctx, url)
	})
	if dead != nil {
		return dead
	}
	return err
}

// httpOK returns nil if GET url answers 200 within probeTimeout.
func httpOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	body, err := Get(ctx, url)
	if err != nil {
		return err
	}
	return body.Close()
}

// Get sends GET url and returns the body of a 200 answer, which the
// caller reads and closes; any other status is an error naming it. ctx
// bounds the request and the reading of the body.
func Get(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}
