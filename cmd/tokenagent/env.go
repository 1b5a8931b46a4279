package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/ipc"
)

// localSecretPlaceholder is what env prints as the client secret: the
// token endpoint identifies callers by uid and ignores it (the IdP's real
// secret never leaves the agent).
const localSecretPlaceholder = "unused-tokenagent-identifies-you-by-uid"

// cmdEnv prints shell exports that point an unmodified OAuth client at
// the agent's loopback token endpoint, for eval or an env file.
func cmdEnv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, socket := clientFlags("env", stderr)
	forClient := fs.String("for", "", "the client to configure: zeebe (zeebe-node, the Zeebe Java client) or oauth (TOKEN_URL, CLIENT_ID, CLIENT_SECRET)")
	profile, err := oneProfile(fs, args)
	if err != nil {
		return err
	}
	if *forClient != "zeebe" && *forClient != "oauth" {
		return usageError{fmt.Sprintf("env: --for %q: use zeebe or oauth", *forClient)}
	}
	c := &clientlib.Client{Socket: *socket}
	defer c.Close()
	lines, err := clientEnv(ctx, c, profile, *forClient)
	if err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintf(stdout, "export %s=%s\n", l[0], ipc.ShellQuote(l[1]))
	}
	return nil
}

// clientEnv is the environment that points a client of kind forClient
// (zeebe, oauth) at the agent's token endpoint for profile: name/value
// pairs, the values checked and safe to print.
func clientEnv(ctx context.Context, c *clientlib.Client, profile, forClient string) ([][2]string, error) {
	url, err := c.TokenEndpoint(ctx)
	if err != nil {
		return nil, clientExit(err)
	}
	if url == "" {
		return nil, errors.New("the agent serves no token endpoint; set token_endpoint = \"127.0.0.1:8731\" in its configuration and reload it")
	}
	profiles, err := c.Profiles(ctx)
	if err != nil {
		return nil, clientExit(err)
	}
	var p *clientlib.ProfileStatus
	for i := range profiles {
		if profiles[i].Name == profile {
			p = &profiles[i]
		}
	}
	if p == nil {
		return nil, clientExit(fmt.Errorf("clientlib: %w", &clientlib.Error{Kind: clientlib.ErrUnknownProfile,
			Description: fmt.Sprintf("no profile %q that you may use", profile)}))
	}
	vars := map[string][2]string{
		"zeebe": {"ZEEBE_AUTHORIZATION_SERVER_URL", "ZEEBE_CLIENT_ID"},
		"oauth": {"TOKEN_URL", "CLIENT_ID"},
	}[forClient]
	secretVar, audienceVar, scopeVar := "ZEEBE_CLIENT_SECRET", "ZEEBE_TOKEN_AUDIENCE", "ZEEBE_TOKEN_SCOPE"
	if forClient == "oauth" {
		secretVar, audienceVar, scopeVar = "CLIENT_SECRET", "AUDIENCE", "SCOPE"
	}
	lines := [][2]string{{vars[0], url}, {vars[1], p.Name}, {secretVar, localSecretPlaceholder}}
	if p.Audience != "" {
		lines = append(lines, [2]string{audienceVar, p.Audience})
	}
	if len(p.Scopes) > 0 {
		lines = append(lines, [2]string{scopeVar, strings.Join(p.Scopes, " ")})
	}
	for i := range lines {
		lines[i][1] = ipc.SafeText(lines[i][1])
	}
	return lines, nil
}
