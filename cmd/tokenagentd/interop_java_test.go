package main

import (
	"archive/zip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/clientlib"
)

// The Java interop tests run real JVMs, in their default configuration,
// against the loopback token endpoint. Java opens dual-stack AF_INET6
// sockets by default, so a Java client reaches 127.0.0.1 from
// [::ffff:127.0.0.1]: the agent identifies it only through the kernel's
// IPv6 table (issue 22: Java clients were refused). They need a JDK
// (openjdk-17-jdk-headless: javac compiles the programs of
// testdata/java into a temporary directory, never into the checkout) and,
// for the library, Debian's libgoogle-oauth-client-java; a test never
// installs them. Like the rest of the interop suite they run only when
// asked (TOKENAGENT_INTEROP=required, as .ci/run sets, or -interop), and
// then fail rather than skip on what is missing.

const javaHowTo = "run them with: apt-get install openjdk-17-jdk-headless libgoogle-oauth-client-java && TOKENAGENT_INTEROP=required go test -run Java ./cmd/tokenagentd/ (or -interop)"

// javaProcesses is how many separate JVMs ask for the token at once.
const javaProcesses = 20

// googleOAuthClientJars is Debian's libgoogle-oauth-client-java and what
// its default transport loads at run time (Debian's jars carry no
// Class-Path), in /usr/share/java.
var googleOAuthClientJars = []string{"google-oauth-client", "google-http-client", "google-http-client-gson",
	"gson", "guava", "opencensus-api", "opencensus-contrib-http-util", "grpc-context"}

// TestInteropJavaHTTPClient: the JDK's own java.net.http.HttpClient, as a
// Java service would use it, with the URL written with localhost.
func TestInteropJavaHTTPClient(t *testing.T) {
	java, javac := javaTools(t)
	javaSharesOneStream(t, javaClient{java: java, javac: javac, program: "HttpClientToken", host: "localhost",
		clientID: "orders"}) // by profile name
}

// TestInteropJavaGoogleOAuthClient: Debian's google-oauth-client,
// ClientCredentialsTokenRequest on its default NetHttpTransport, with
// the URL written with 127.0.0.1 and the IdP's client id kept as it was.
func TestInteropJavaGoogleOAuthClient(t *testing.T) {
	java, javac := javaTools(t)
	var jars []string
	for _, j := range googleOAuthClientJars {
		jar := filepath.Join("/usr/share/java", j+".jar")
		if _, err := os.Stat(jar); err != nil {
			t.Fatalf("the Java OAuth library is not installed (%v): apt-get install libgoogle-oauth-client-java", err)
		}
		jars = append(jars, jar)
	}
	t.Logf("library: google-oauth-client %s, google-http-client %s", jarVersion(jars[0]), jarVersion(jars[1]))
	javaSharesOneStream(t, javaClient{java: java, javac: javac, program: "GoogleOAuthClientToken", host: "127.0.0.1",
		clientID: "orders-service", classpath: jars, // by the IdP's client id
		// On a 401 that carries WWW-Authenticate (RFC 6749 §5.2, as the
		// agent sends when the client used HTTP Basic) to a fixed-length
		// POST, the JDK's HttpURLConnection, under NetHttpTransport,
		// drops the body: the library reports no error details.
		errorBodyHidden: true})
}

// jarVersion is the Implementation-Version in a jar's manifest.
func jarVersion(jar string) string {
	z, err := zip.OpenReader(jar)
	if err != nil {
		return err.Error()
	}
	defer z.Close()
	f, err := z.Open("META-INF/MANIFEST.MF")
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	manifest, _ := io.ReadAll(f)
	for _, line := range strings.Split(string(manifest), "\n") {
		if v, ok := strings.CutPrefix(line, "Implementation-Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// javaTools finds java and javac, or skips when the interop suite was not
// asked for.
func javaTools(t *testing.T) (java, javac string) {
	t.Helper()
	if !interopAsked() {
		t.Skip("interop tests with real Java clients are off; " + javaHowTo)
	}
	java, err := exec.LookPath("java")
	if err == nil {
		javac, err = exec.LookPath("javac")
	}
	if err != nil {
		t.Fatalf("Java interop tests asked for, but %v: apt-get install openjdk-17-jdk-headless", err)
	}
	out, _ := exec.Command(java, "-version").CombinedOutput()
	t.Logf("java -version: %s", strings.Join(strings.Fields(string(out)), " "))
	return java, javac
}

type javaClient struct {
	java, javac string
	program     string   // class in testdata/java/PROGRAM.java
	host        string   // as the user writes it in the token URL
	clientID    string   // the profile's name or the IdP's client id
	classpath   []string // library jars
	// errorBodyHidden: the program cannot show the body of a 401.
	errorBodyHidden bool
}

// compile builds the program into a directory that the JVMs' user can
// read, under testDir (t.TempDir's parent is 0700), and returns the
// class path to run it with.
func (c javaClient) compile(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(testDir, "java-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := filepath.Abs(filepath.Join("testdata/java", c.program+".java"))
	if err != nil {
		t.Fatal(err)
	}
	cp := strings.Join(append(slices.Clone(c.classpath), dir), ":")
	if out, err := exec.Command(c.javac, "-d", dir, "-cp", cp, src).CombinedOutput(); err != nil {
		t.Fatalf("javac %s: %v\n%s", src, err, out)
	}
	return cp
}

// javaAnswer is what one JVM printed: the status it got and the body.
type javaAnswer struct {
	status int
	body   string
	token  struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
}

// run starts n JVMs at once as u (nil: this process's user), each
// with nothing but the token URL, client id and secret in its
// environment (no JAVA_TOOL_OPTIONS, no flags), and returns what each
// printed.
func (c javaClient) run(t *testing.T, n int, cp string, u *user.User, tokenURL, secret string) []javaAnswer {
	t.Helper()
	answers := make([]javaAnswer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cmd := exec.Command(c.java, "-cp", cp, c.program)
			cmd.Dir = testDir // one the JVM's user may enter
			cmd.Env = []string{"PATH=/usr/bin:/bin", "TOKEN_URL=" + tokenURL, "CLIENT_ID=" + c.clientID, "CLIENT_SECRET=" + secret}
			if u != nil {
				id, _ := strconv.Atoi(u.Uid)
				gid, _ := strconv.Atoi(u.Gid)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(id), Gid: uint32(gid), Groups: []uint32{}}}
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			first, rest, _ := strings.Cut(string(out), "\n")
			a := &answers[i]
			a.body = strings.TrimSpace(rest)
			a.status, _ = strconv.Atoi(first)
			if err != nil || a.status == 0 {
				errs[i] = fmt.Errorf("%v: stdout %q, stderr %s", err, out, stderr.String())
			} else if a.status == 200 {
				if err := json.Unmarshal([]byte(a.body), &a.token); err != nil {
					errs[i] = fmt.Errorf("body %q: %v", a.body, err)
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("java %s, process %d of %d: %v", c.program, i, n, err)
		}
	}
	return answers
}

// javaSharesOneStream: javaProcesses separate JVMs, run by a user the
// profile's allow list names (when root: a user of another uid), get the
// IdP's token from the loopback endpoint at the cost of one IdP request;
// the agent logs each request under that user's uid. A user the list does
// not name gets invalid_client even with the right local_secret: the
// agent identified it, and the secret vouches only for callers it cannot
// identify.
func javaSharesOneStream(t *testing.T, c javaClient) {
	t.Helper()
	const idpClient, idpSecret = "orders-service", "idp-secret-never-leaves-the-agent"
	idp := idptest.New()
	t.Cleanup(idp.Close)
	idp.AddClient(idptest.Client{ID: idpClient, Secret: idpSecret, Method: "client_secret_basic"})
	raw := make([]byte, 24)
	rand.Read(raw)
	localSecret := base64.RawURLEncoding.EncodeToString(raw) // 32 characters, 192 bits

	var allowed, refused *user.User
	allowList := ""
	if os.Geteuid() == 0 {
		var err error
		if allowed, err = user.Lookup("daemon"); err != nil {
			t.Fatalf("no user daemon to run the allowed JVMs as: %v", err)
		}
		if refused, err = user.Lookup("bin"); err != nil {
			t.Fatalf("no user bin to run the refused JVM as: %v", err)
		}
		allowList = fmt.Sprintf("allow_users = [%q]\n", allowed.Username)
	} else {
		t.Log("not root: the JVMs run as the agent's own user, and no other user is tried")
	}
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "agent.toml"), fmt.Sprintf(`store = "memory"
token_endpoint = "127.0.0.1:0"
log_level = "debug"

[profiles.orders]
token_url = %q
client_id = %q
client_secret = %q
local_secret = %q
scopes = ["orders:read"]
%s`, idp.TokenURL, idpClient, idpSecret, localSecret, allowList))
	d := startDaemon(t, filepath.Join(dir, "agent.toml"))
	cl := &clientlib.Client{Socket: d.socket}
	t.Cleanup(func() { cl.Close() })
	endpoint, err := cl.TokenEndpoint(context.Background())
	if err != nil || !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
		t.Fatalf("TokenEndpoint = %q, %v", endpoint, err)
	}
	tokenURL := strings.Replace(endpoint, "127.0.0.1", c.host, 1)
	cp := c.compile(t)

	answers := c.run(t, javaProcesses, cp, allowed, tokenURL, localSecret)
	for i, a := range answers {
		if a.status != 200 || a.token.AccessToken != answers[0].token.AccessToken || a.token.TokenType != "Bearer" || a.token.ExpiresIn <= 0 {
			t.Fatalf("JVM %d of %d: %d %s; want 200 with the same Bearer token as JVM 0 and an expires_in", i, javaProcesses, a.status, a.body)
		}
	}
	tok := answers[0].token.AccessToken
	if claims, err := idp.VerifyToken(tok); err != nil || claims["client_id"] != idpClient {
		t.Errorf("the JVMs' token does not verify against the IdP's key as %s's: %v %v", idpClient, claims, err)
	}
	if !slices.Contains(idp.Issued(), tok) {
		t.Errorf("the JVMs' token is not one the IdP issued")
	}
	requests := idp.Requests(idpClient)
	if requests != 1 {
		t.Errorf("%d JVMs through the agent cost the IdP %d token requests, want 1", javaProcesses, requests)
	}
	uid := os.Geteuid()
	if allowed != nil {
		uid, _ = strconv.Atoi(allowed.Uid)
	}
	if n := endpointLogLines(d, uid, 200, javaProcesses); n != javaProcesses {
		t.Errorf("the agent logged %d answers of 200 at the token endpoint to uid %d, want %d (one per JVM)", n, uid, javaProcesses)
	}
	t.Logf("%d JVMs (%s, %s) as uid %d: %d tokens, all the same, %d IdP token request(s)",
		javaProcesses, c.program, tokenURL, uid, len(answers), requests)

	if refused == nil {
		return
	}
	refusedUID, _ := strconv.Atoi(refused.Uid)
	a := c.run(t, 1, cp, refused, tokenURL, localSecret)[0]
	if a.status != 401 || !c.errorBodyHidden && !strings.Contains(a.body, "invalid_client") {
		t.Errorf("a JVM of uid %d, which the allow list does not name, with the right local_secret: %d %s; want 401 invalid_client", refusedUID, a.status, a.body)
	}
	if n := endpointLogLines(d, refusedUID, 401, 1); n != 1 {
		t.Errorf("the agent logged %d refusals at the token endpoint to uid %d, want 1: it must identify the caller, not take it for an unknown one", n, refusedUID)
	}
	if got := idp.Requests(idpClient); got != 1 {
		t.Errorf("IdP token requests after the refused JVM = %d, want still 1", got)
	}
}

// logWait bounds how long endpointLogLines waits for lines the agent
// writes after the answer, so after the JVM may have exited; they come
// within milliseconds.
const logWait = 30 * time.Second

// endpointLogLines counts the agent's request log lines for the token
// endpoint with that caller uid and status, waiting (up to logWait) for
// at least want of them: the agent logs a request after answering it.
func endpointLogLines(d *agentProc, uid, status, want int) int {
	match := func(l string) bool {
		return strings.Contains(l, `"door":"token_endpoint"`) && strings.Contains(l, fmt.Sprintf(`"uid":%d,`, uid)) &&
			strings.Contains(l, fmt.Sprintf(`"status":%d,`, status))
	}
	timedOut := false
	timer := time.AfterFunc(logWait, func() {
		d.mu.Lock()
		timedOut = true
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer timer.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		n := 0
		for _, l := range d.lines {
			if match(l) {
				n++
			}
		}
		select {
		case <-d.done:
			return n
		default:
		}
		if n >= want || timedOut {
			return n
		}
		d.cond.Wait()
	}
}
