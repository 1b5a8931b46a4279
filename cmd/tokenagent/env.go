package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/cmd/internal/cli"
	"github.com/tokenagent/tokenagent/ipc"
)

// localSecretPlaceholder is what env prints as the client secret: the
// token endpoint identifies callers by uid and ignores it (the IdP's real
// secret never leaves the agent).
const localSecretPlaceholder = "unused-tokenagent-identifies-you-by-uid"

// clientKind names the environment variables one family of clients reads
// its OAuth settings from. Each was read off the client's own source:
// zeebe-node 8.3 (ConfigurationHydrator; the Zeebe Java and Go clients and
// zbctl read the same names) and the Camunda 8 JavaScript SDK 8.8
// (@camunda8/sdk, Configuration and OAuthProvider). The interop tests run
// both real clients with nothing but what env prints.
type clientKind struct {
	url, id, secret, audience, scope string
	// fixed are set whatever the profile.
	fixed [][2]string
	// runtime is the one runtime the kind is for ("": any), whose trust
	// of the local CA --https sets (trustEnv).
	runtime string
}

var clientKinds = map[string]clientKind{
	"zeebe": {url: "ZEEBE_AUTHORIZATION_SERVER_URL", id: "ZEEBE_CLIENT_ID", secret: "ZEEBE_CLIENT_SECRET",
		audience: "ZEEBE_TOKEN_AUDIENCE", scope: "ZEEBE_TOKEN_SCOPE"},
	// The SDK caches tokens on disk unless told not to; the agent is the
	// cache, so one copy less of the token lies around.
	"camunda": {url: "CAMUNDA_OAUTH_URL", id: "ZEEBE_CLIENT_ID", secret: "ZEEBE_CLIENT_SECRET",
		audience: "CAMUNDA_ZEEBE_OAUTH_AUDIENCE", scope: "CAMUNDA_TOKEN_SCOPE",
		fixed: [][2]string{{"CAMUNDA_AUTH_STRATEGY", "OAUTH"}, {"CAMUNDA_TOKEN_DISK_CACHE_DISABLE", "true"}}},
	"oauth": {url: "TOKEN_URL", id: "CLIENT_ID", secret: "CLIENT_SECRET", audience: "AUDIENCE", scope: "SCOPE"},
	// The runtimes: the oauth names, and with --https what the runtime
	// reads to trust the agent's local CA (only its own).
	"java":   {url: "TOKEN_URL", id: "CLIENT_ID", secret: "CLIENT_SECRET", audience: "AUDIENCE", scope: "SCOPE", runtime: "java"},
	"python": {url: "TOKEN_URL", id: "CLIENT_ID", secret: "CLIENT_SECRET", audience: "AUDIENCE", scope: "SCOPE", runtime: "python"},
	"node":   {url: "TOKEN_URL", id: "CLIENT_ID", secret: "CLIENT_SECRET", audience: "AUDIENCE", scope: "SCOPE", runtime: "node"},
}

// trustEnv is what a runtime reads to trust the agent's local CA: Node
// adds NODE_EXTRA_CA_CERTS to its CAs; Python's requests and OpenSSL
// (SSL_CERT_FILE, which Go and curl read too) take the bundle in place of
// theirs, so it holds the host's CAs as well; Java takes the trust store
// in the same way. runtime "" is every one of them (a client kind not
// tied to one runtime).
func trustEnv(runtime string, ca *clientlib.LocalCA) [][2]string {
	var env [][2]string
	if runtime == "" || runtime == "node" {
		env = append(env, [2]string{"NODE_EXTRA_CA_CERTS", ca.Cert})
	}
	if runtime == "" || runtime == "python" {
		env = append(env, [2]string{"REQUESTS_CA_BUNDLE", ca.Bundle}, [2]string{"SSL_CERT_FILE", ca.Bundle})
	}
	if runtime == "" || runtime == "java" {
		env = append(env, [2]string{"JAVA_TOOL_OPTIONS", "-Djavax.net.ssl.trustStore=" + ca.TrustStore +
			" -Djavax.net.ssl.trustStorePassword=" + ca.TrustStorePassword + " -Djavax.net.ssl.trustStoreType=PKCS12"})
	}
	return env
}

// findProfile is the listing of profile, among those the caller may use.
func findProfile(ctx context.Context, c *clientlib.Client, profile string) (*clientlib.ProfileStatus, error) {
	profiles, err := c.Profiles(ctx)
	if err != nil {
		return nil, clientExit(err)
	}
	for i := range profiles {
		if profiles[i].Name == profile {
			return &profiles[i], nil
		}
	}
	return nil, clientExit(fmt.Errorf("clientlib: %w", &clientlib.Error{Kind: clientlib.ErrUnknownProfile,
		Description: fmt.Sprintf("no profile %q that you may use", profile)}))
}

// insecureTransport is the variable that lets Python's oauthlib (and so
// requests-oauthlib) use a token URL of plain http.
const insecureTransport = "OAUTHLIB_INSECURE_TRANSPORT"

// forClientHelp describes --for's values, for env and exec.
const forClientHelp = "zeebe (zeebe-node, the Zeebe Java and Go clients, zbctl), camunda (the Camunda 8 JavaScript SDK), oauth (TOKEN_URL, CLIENT_ID, CLIENT_SECRET, AUDIENCE, SCOPE), java, python or node (oauth's, and with --https that runtime's trust of the agent's CA), " +
	"azure (the Azure SDKs' managed identity: IDENTITY_ENDPOINT, IDENTITY_HEADER, AZURE_POD_IDENTITY_AUTHORITY_HOST) or gcp (the Google SDKs: GCE_METADATA_HOST, the profile's gcp_metadata)"

// checkForClient refuses an unknown --for for command cmd.
func checkForClient(cmd, forClient string) error {
	if _, ok := clientKinds[forClient]; !ok && forClient != forAzure && forClient != forGCP {
		return cli.UsageError{Msg: fmt.Sprintf("%s: --for %q: use zeebe, camunda, oauth, java, python, node, azure or gcp", cmd, forClient)}
	}
	return nil
}

// forGCP is --for gcp: the Google SDKs (google-auth-library, google-auth
// for Python, cloud.google.com/go) find the metadata server by
// GCE_METADATA_HOST, and Python's by GCE_METADATA_IP for its detection.
const forGCP = "gcp"

// gcpEnv points the Google SDKs at the profile's metadata server.
func gcpEnv(p *clientlib.ProfileStatus, https bool) ([][2]string, error) {
	switch {
	case https:
		return nil, errors.New("--for gcp: the metadata server is plain http on loopback, as on Compute Engine; leave out --https")
	case p.GCPMetadata == "":
		return nil, fmt.Errorf("profile %q has no metadata server; set gcp_metadata = \"127.0.0.1:8734\" in its section and restart the agent", p.Name)
	}
	addr := ipc.SafeText(p.GCPMetadata)
	// google-auth-library's detection ping gives up after 3 s, which
	// busy hosts exceed while Node loads (1 in 20 processes on 2 CPUs):
	// the server is known to be there, so it is not pinged.
	return [][2]string{{"GCE_METADATA_HOST", addr}, {"GCE_METADATA_IP", addr}, {"METADATA_SERVER_DETECTION", "assume-present"}}, nil
}

// cmdEnv prints shell exports that point an unmodified OAuth client at
// the agent's loopback token endpoint, for eval or an env file.
func cmdEnv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, socket := clientFlags("env", stderr)
	forClient := fs.String("for", "", "the `kind` of client to configure: "+forClientHelp)
	https := fs.Bool("https", false, httpsHelp)
	profile, err := oneProfile(fs, args)
	if err != nil {
		return err
	}
	if err := checkForClient("env", *forClient); err != nil {
		return err
	}
	c := &clientlib.Client{Socket: *socket}
	defer c.Close()
	lines, err := clientEnv(ctx, c, profile, *forClient, *https)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if l[0] == insecureTransport {
			fmt.Fprintln(stdout, "# requests-oauthlib refuses http:// without it; the agent's endpoint is loopback only")
		}
		fmt.Fprintf(stdout, "export %s=%s\n", l[0], ipc.ShellQuote(l[1]))
	}
	return nil
}

// httpsHelp describes --https, for env and exec.
const httpsHelp = "point the client at the token endpoint's https:// URL (token_endpoint_https) and make its runtime trust the agent's local CA"

// clientEnv is the environment that points a client of kind forClient
// (a key of clientKinds) at the agent's token endpoint for profile (its
// https:// one, and the runtime's trust of the local CA, with https):
// name/value pairs, the values checked and safe to print.
func clientEnv(ctx context.Context, c *clientlib.Client, profile, forClient string, https bool) ([][2]string, error) {
	if forClient == forGCP {
		p, err := findProfile(ctx, c, profile)
		if err != nil {
			return nil, err
		}
		return gcpEnv(p, https)
	}
	h, err := c.Health(ctx)
	if err != nil {
		return nil, clientExit(err)
	}
	if forClient == forAzure {
		return azureEnv(ctx, c, h, profile, https)
	}
	url := h.TokenEndpoint
	switch {
	case https && (h.TokenEndpointHTTPS == "" || h.LocalCA == nil):
		return nil, errors.New("the agent serves no https token endpoint; set token_endpoint_https = \"127.0.0.1:8732\" in its configuration and restart it")
	case https:
		url = h.TokenEndpointHTTPS
	case url == "":
		return nil, errors.New("the agent serves no token endpoint; set token_endpoint = \"127.0.0.1:8731\" in its configuration and restart it")
	}
	p, err := findProfile(ctx, c, profile)
	if err != nil {
		return nil, err
	}
	k := clientKinds[forClient]
	lines := append([][2]string{{k.url, url}, {k.id, p.Name}, {k.secret, localSecretPlaceholder}}, k.fixed...)
	if https {
		lines = append(lines, trustEnv(k.runtime, h.LocalCA)...)
	}
	if (forClient == "oauth" || forClient == "python") && strings.HasPrefix(url, "http://") {
		// Python's oauthlib refuses a plain-http token URL unless told;
		// the agent's plain endpoint is loopback only.
		lines = append(lines, [2]string{insecureTransport, "1"})
	}
	if p.Audience != "" {
		lines = append(lines, [2]string{k.audience, p.Audience})
	}
	if len(p.Scopes) > 0 {
		lines = append(lines, [2]string{k.scope, strings.Join(p.Scopes, " ")})
	}
	for i := range lines {
		lines[i][1] = ipc.SafeText(lines[i][1])
	}
	return lines, nil
}

// forAzure is --for's value for the Azure SDKs.
const forAzure = "azure"

// azureEnv is the environment of the Azure SDKs' managed identity
// (@azure/identity, azure-identity for Python, MSAL's; read off their
// sources): App Service's variables, which both prefer, and IMDS's host
// for clients that only speak IMDS. AZURE_CLIENT_ID (which
// DefaultAzureCredential sends as client_id) pins the profile named,
// where several fit the resource asked for. Not IMDS_ENDPOINT: beside
// IDENTITY_ENDPOINT it means Azure Arc, another protocol.
func azureEnv(ctx context.Context, c *clientlib.Client, h clientlib.Health, profile string, https bool) ([][2]string, error) {
	az := h.AzureIdentity
	switch {
	case https:
		return nil, errors.New("--for azure: the Azure SDKs' managed identity protocols are plain http on loopback; drop --https")
	case az == nil:
		return nil, errors.New("the agent serves no Azure identity endpoint; set azure_identity_endpoint = \"127.0.0.1:8733\" in its configuration and restart it")
	}
	profiles, err := c.Profiles(ctx)
	if err != nil {
		return nil, clientExit(err)
	}
	known := false
	for _, p := range profiles {
		known = known || p.Name == profile
	}
	if !known || az.Header == "" {
		return nil, clientExit(fmt.Errorf("clientlib: %w", &clientlib.Error{Kind: clientlib.ErrUnknownProfile,
			Description: fmt.Sprintf("no profile %q that you may use", profile)}))
	}
	lines := [][2]string{{"IDENTITY_ENDPOINT", az.Endpoint}, {"IDENTITY_HEADER", az.Header},
		{"AZURE_POD_IDENTITY_AUTHORITY_HOST", az.IMDSHost}, {"AZURE_CLIENT_ID", profile}}
	for i := range lines {
		lines[i][1] = ipc.SafeText(lines[i][1])
	}
	return lines, nil
}
