package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"software.sslmate.com/src/go-pkcs12"
)

// The interop suite runs the agent against oidc-provider, an
// OpenID-certified server in Node.js, so that our own idptest cannot agree
// with our own bugs. It needs Node.js and the npm packages of
// testdata/interop, which a test never installs (the quick loop stays
// offline and writes nothing into the checkout): it runs only when asked,
// with TOKENAGENT_INTEROP=required (as .ci/run does after its own npm ci)
// or -interop, and then fails rather than skips on what is missing.

var interopFlag = flag.Bool("interop", false, "run the interop tests against oidc-provider and the npm clients (needs Node.js and npm ci in cmd/tokenagentd/testdata/interop)")

const interopHowTo = "run them with: (cd cmd/tokenagentd/testdata/interop && npm ci) && TOKENAGENT_INTEROP=required go test ./cmd/tokenagentd/ (or go test ./cmd/tokenagentd/ -interop)"

const (
	interopResource = "https://api.example.com"
	interopSecret   = "s3cr+t/%:x" // needs form-urlencoding in HTTP Basic
)

type oidcServer struct {
	Issuer   string `json:"issuer"`
	CountURL string `json:"count_url"`
	jwtKey   *rsa.PrivateKey
	keystore string // PKCS#12 file for the Zeebe/Camunda keystore client
	// platform signs the tokens of platformClient, which authenticates
	// with them as a workload platform's (client_assertion).
	platform *idptest.Platform
}

// platformClient is the oidc-provider client whose JWKS is the test
// platform's key; its tokens live platformTokenTTL seconds, so that the
// agent refreshes within a test.
const (
	platformClient   = "platform-client"
	platformTokenTTL = 8
)

const keystorePassword = "keystore-pass"

// oidcStartTimeout bounds the wait for server.mjs to print its issuer; it
// starts in well under a second when its modules are installed.
const oidcStartTimeout = 30 * time.Second

var (
	interopOnce sync.Once
	interopSrv  *oidcServer
	interopErr  error
	interopStop func()
)

// interopAsked says whether the interop tests run: TOKENAGENT_INTEROP=required
// or -interop.
func interopAsked() bool { return os.Getenv("TOKENAGENT_INTEROP") == "required" || *interopFlag }

// interop starts the server once per test binary.
func interop(t *testing.T) *oidcServer {
	t.Helper()
	if !interopAsked() {
		t.Skip("interop tests against oidc-provider and the npm clients are off; " + interopHowTo)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("interop tests asked for, but Node.js is not installed (install nodejs and npm)")
	}
	interopOnce.Do(func() { interopSrv, interopErr = startOIDC(node) })
	if interopErr != nil {
		t.Fatalf("interop server: %v", interopErr)
	}
	return interopSrv
}

func startOIDC(node string) (*oidcServer, error) {
	dir, err := filepath.Abs("testdata/interop")
	if err != nil {
		return nil, err
	}
	// Installing is CI's step (.ci/run), never a test's: npm ci reaches
	// the registry and writes node_modules into the checkout.
	if !npmInstalled(dir, "oidc-provider", "zeebe-node", "@camunda8/sdk") {
		return nil, fmt.Errorf("the npm packages of %s are not installed; %s", dir, interopHowTo)
	}
	s := &oidcServer{}
	if s.jwtKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	ksKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	cert, err := idptest.SelfSigned(ksKey)
	if err != nil {
		return nil, err
	}
	p12, err := pkcs12.Modern2023.Encode(ksKey, cert, nil, keystorePassword)
	if err != nil {
		return nil, err
	}
	s.keystore = filepath.Join(testDir, "keystore.p12")
	if err := os.WriteFile(s.keystore, p12, 0o600); err != nil {
		return nil, err
	}
	os.Chown(s.keystore, 65534, 65534) // the user-mode agent (uid 65534) reads it
	s.platform = idptest.NewPlatform()
	client := func(id, method string, extra map[string]any) map[string]any {
		c := map[string]any{"client_id": id, "grant_types": []string{"client_credentials"}, "redirect_uris": []string{},
			"response_types": []string{}, "token_endpoint_auth_method": method}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	clients := []map[string]any{
		client("basic-client", "client_secret_basic", map[string]any{"client_secret": interopSecret}),
		client("post-client", "client_secret_post", map[string]any{"client_secret": "post-secret-0123456789"}),
		client("jwt-client", "private_key_jwt", map[string]any{"jwks": map[string]any{"keys": []any{rsaJWK(&s.jwtKey.PublicKey)}}, "token_endpoint_auth_signing_alg": "PS256"}),
		client("zeebe-worker", "private_key_jwt", map[string]any{"jwks": map[string]any{"keys": []any{rsaJWK(&ksKey.PublicKey)}}}),
		client(platformClient, "private_key_jwt", map[string]any{"jwks": map[string]any{"keys": []any{ecJWK(s.platform.PublicKey())}}, "token_endpoint_auth_signing_alg": "ES256"}),
	}
	data, _ := json.Marshal(clients)
	clientsFile := filepath.Join(testDir, "clients.json")
	if err := os.WriteFile(clientsFile, data, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CLIENTS_FILE="+clientsFile, "RESOURCE="+interopResource,
		fmt.Sprintf(`TOKEN_TTLS={%q: %d}`, platformClient, platformTokenTTL))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// The first line names the issuer; a server that never prints it is
	// stopped after a bound rather than hanging the whole test binary.
	type first struct {
		line string
		err  error
	}
	ready := make(chan first, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		ready <- first{line, err}
	}()
	var line string
	select {
	case r := <-ready:
		line, err = r.line, r.err
	case <-time.After(oidcStartTimeout):
		err = fmt.Errorf("no issuer line on stdout within %v", oidcStartTimeout)
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("oidc-provider (node %s in %s) did not start: %v\n%s", "server.mjs", dir, err, stderr.String())
	}
	if err := json.Unmarshal([]byte(line), s); err != nil {
		return nil, err
	}
	interopStop = func() { stdin.Close(); cmd.Wait() }
	return s, nil
}

// npmInstalled says whether every package is in dir's node_modules.
func npmInstalled(dir string, packages ...string) bool {
	for _, p := range packages {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p, "package.json")); err != nil {
			return false
		}
	}
	return true
}

func rsaJWK(pub *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(pub *ecdsa.PublicKey) map[string]string {
	raw, _ := pub.Bytes() // 0x04 ‖ x ‖ y, 32 bytes each for P-256
	return map[string]string{"kty": "EC", "crv": "P-256", "use": "sig", "kid": idptest.PlatformKeyID,
		"x": base64.RawURLEncoding.EncodeToString(raw[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(raw[33:])}
}

func (s *oidcServer) tokenRequests(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(s.CountURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// verify checks a token's signature against the server's JWKS and its
// RFC 9068 claims, and that it has most of an hour left.
func (s *oidcServer) verify(t *testing.T, token, clientID, scope string) {
	t.Helper()
	s.verifyLeft(t, token, clientID, scope, 50*time.Minute)
}

// verifyLeft is verify for a token that must have at least left to live.
func (s *oidcServer) verifyLeft(t *testing.T, token, clientID, scope string, left time.Duration) {
	t.Helper()
	var disc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, s.Issuer+"/.well-known/openid-configuration", &disc)
	var jwks struct {
		Keys []struct{ Kid, N, E string } `json:"keys"`
	}
	getJSON(t, disc.JWKSURI, &jwks)
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		for _, k := range jwks.Keys {
			if k.Kid == tok.Header["kid"] {
				n, _ := base64.RawURLEncoding.DecodeString(k.N)
				e, _ := base64.RawURLEncoding.DecodeString(k.E)
				return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
			}
		}
		return nil, fmt.Errorf("no key %v in the JWKS", tok.Header["kid"])
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(interopResource), jwt.WithIssuer(s.Issuer), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("token does not verify against the server's JWKS: %v", err)
	}
	exp, _ := claims.GetExpirationTime()
	if claims["client_id"] != clientID || claims["scope"] != scope || time.Until(exp.Time) < left {
		t.Errorf("claims = %v, want client_id %q, scope %q, exp at least %v away", claims, clientID, scope, left)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// tokenViaCLI runs the real `tokenagent token` as its own process.
func tokenViaCLI(t *testing.T, socket, profile string, env ...string) string {
	t.Helper()
	out, stderr, err := agentCLIEnv(t, env, socket, "token", profile)
	if err != nil {
		t.Fatalf("tokenagent token %s: %v: %s", profile, err, stderr)
	}
	return strings.TrimSpace(out)
}

func TestInteropAuthMethodsAndDiscovery(t *testing.T) {
	s := interop(t)
	dir := t.TempDir()
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s.jwtKey)})
	writeConfig(t, filepath.Join(dir, "jwt.pem"), string(keyPEM))
	tokenURL := s.Issuer + "/token"
	profile := func(name, endpoint, client, auth string) string {
		return fmt.Sprintf("[profiles.%s]\n%s\nclient_id = %q\n%s\nscopes = [\"api:read\"]\nresource = [%q]\n\n", name, endpoint, client, auth, interopResource)
	}
	byURL := fmt.Sprintf("token_url = %q", tokenURL)
	byIssuer := fmt.Sprintf("issuer = %q", s.Issuer)
	basic := fmt.Sprintf("client_secret = %q", interopSecret)
	post := "client_secret = \"post-secret-0123456789\"\nauth = \"client_secret_post\""
	jwtAuth := "private_key = \"file:jwt.pem\"\nassertion_alg = \"PS256\""
	config := "store = \"memory\"\n" +
		profile("basic", byURL, "basic-client", basic) + profile("basic-discovered", byIssuer, "basic-client", basic) +
		profile("post", byURL, "post-client", post) + profile("post-discovered", byIssuer, "post-client", post) +
		profile("jwt", byURL, "jwt-client", jwtAuth) + profile("jwt-discovered", byIssuer, "jwt-client", jwtAuth)
	writeConfig(t, filepath.Join(dir, "agent.toml"), config)
	d := startDaemon(t, filepath.Join(dir, "agent.toml"))
	for _, tc := range []struct{ profile, client string }{
		{"basic", "basic-client"}, {"basic-discovered", "basic-client"},
		{"post", "post-client"}, {"post-discovered", "post-client"},
		{"jwt", "jwt-client"}, {"jwt-discovered", "jwt-client"},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			s.verify(t, tokenViaCLI(t, d.socket, tc.profile), tc.client, "api:read")
		})
	}
}

func TestInteropColdBurstIsOneRequest(t *testing.T) {
	s := interop(t)
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "agent.toml"), fmt.Sprintf("store = \"memory\"\n[profiles.cold]\ntoken_url = %q\nclient_id = \"basic-client\"\nclient_secret = %q\nscopes = [\"api:write\"]\n",
		s.Issuer+"/token", interopSecret))
	d := startDaemon(t, filepath.Join(dir, "agent.toml"))
	bin := buildCLI(t)
	before := s.tokenRequests(t)
	const processes = 200
	tokens := make([]string, processes)
	errs := make([]error, processes)
	var wg sync.WaitGroup
	for i := range processes {
		wg.Go(func() {
			out, err := exec.Command(bin, "token", "cold", "--socket", d.socket).Output()
			tokens[i], errs[i] = strings.TrimSpace(string(out)), err
		})
	}
	wg.Wait()
	for i := range processes {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("process %d: %v (same token: %v)", i, errs[i], tokens[i] == tokens[0])
		}
	}
	if got := s.tokenRequests(t) - before; got != 1 {
		t.Errorf("token requests at oidc-provider for %d concurrent cold `tokenagent token` processes = %d, want 1", processes, got)
	}
	s.verify(t, tokens[0], "basic-client", "api:write")
}

// TestInteropZeebeEnvironment: no configuration file, only the Zeebe and
// Camunda keystore variables, with the agent running in user mode (uid
// 65534, XDG paths).
func TestInteropZeebeEnvironment(t *testing.T) {
	s := interop(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the agent as another user")
	}
	home := filepath.Join(testDir, "zeebe-home")
	os.MkdirAll(home, 0o700)
	os.Chown(home, 65534, 65534)
	socket := filepath.Join(home, "agent.sock")
	cmd := exec.Command(buildBinary(t), "--socket", socket)
	cmd.Env = []string{
		"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "XDG_STATE_HOME=" + filepath.Join(home, "state"),
		"ZEEBE_CLIENT_ID=zeebe-worker",
		"ZEEBE_AUTHORIZATION_SERVER_URL=" + s.Issuer + "/token",
		"ZEEBE_TOKEN_AUDIENCE=zeebe-api",
		"ZEEBE_TOKEN_SCOPE=api:read",
		"CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PATH=" + s.keystore,
		"CAMUNDA_CLIENT_AUTH_CLIENT_ASSERTION_KEYSTORE_PASSWORD=" + keystorePassword,
		"GORACE=atexit_sleep_ms=0",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); exited <- err }()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); <-exited }()
	sc := bufio.NewScanner(pr)
	var log []string
	for sc.Scan() {
		log = append(log, sc.Text())
		if strings.Contains(sc.Text(), "agent started") {
			break
		}
	}
	if !strings.Contains(strings.Join(log, "\n"), `"profiles":["zeebe"]`) {
		t.Fatalf("agent did not start with a zeebe profile:\n%s", strings.Join(log, "\n"))
	}
	go io.Copy(io.Discard, pr)
	// The agent runs as another uid than this (root) client: the client
	// trusts it only when told to.
	s.verify(t, tokenViaCLI(t, socket, "zeebe", "TOKENAGENT_AGENT_UID=65534"), "zeebe-worker", "api:read")
}

// concurrently runs n processes at once, each made by cmd(i), and returns
// the standard output of each, trimmed. A process that fails fails the
// test, named as what, process i of n, with its standard error.
func concurrently(t *testing.T, what string, n int, cmd func(i int) *exec.Cmd) []string {
	t.Helper()
	outs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c := cmd(i)
		wg.Go(func() {
			var stderr strings.Builder
			c.Stderr = &stderr
			out, err := c.Output()
			outs[i] = strings.TrimSpace(string(out))
			if err != nil {
				errs[i] = fmt.Errorf("%v: stdout %.300q, stderr %.2000s", err, outs[i], stderr.String())
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s, process %d of %d: %v", what, i, n, err)
		}
	}
	return outs
}
