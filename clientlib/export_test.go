package clientlib

// Trusts exposes the server check's rule to the tests.
func Trusts(c *Client, uid int) bool { return c.trusts(uid) }
