package clientlib

import "context"

// Trusts exposes the server check's rule to the tests.
func Trusts(c *Client, uid int) bool { return c.trusts(uid) }

// Get asks the agent for path and discards a 200's body: the tests reach
// endpoints no method of Client names (an older or newer agent's).
func Get(ctx context.Context, c *Client, path string) error {
	var out struct{}
	return c.do(ctx, "GET", path, nil, &out)
}
