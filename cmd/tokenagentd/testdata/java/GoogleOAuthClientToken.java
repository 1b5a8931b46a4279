import com.google.api.client.auth.oauth2.ClientCredentialsTokenRequest;
import com.google.api.client.auth.oauth2.TokenResponse;
import com.google.api.client.auth.oauth2.TokenResponseException;
import com.google.api.client.http.BasicAuthentication;
import com.google.api.client.http.GenericUrl;
import com.google.api.client.http.HttpResponse;
import com.google.api.client.http.javanet.NetHttpTransport;
import com.google.api.client.json.gson.GsonFactory;

/**
 * A Java service getting a client-credentials token with Google's OAuth
 * client library (Debian's libgoogle-oauth-client-java), as its
 * documentation shows: ClientCredentialsTokenRequest on the default
 * NetHttpTransport (java.net.HttpURLConnection: a dual-stack AF_INET6
 * socket) with the client id and secret in HTTP Basic. Its configuration
 * is the three variables a deployment would set: TOKEN_URL, CLIENT_ID and
 * CLIENT_SECRET.
 *
 * It prints the status it got on one line and the token response (or the
 * error body) on the next, and leaves judging them to the test
 * (cmd/tokenagentd/interop_java_test.go). executeUnparsed() and parseAs
 * are what execute() does, with the status kept for the test.
 */
public class GoogleOAuthClientToken {
    public static void main(String[] args) throws Exception {
        GsonFactory json = GsonFactory.getDefaultInstance();
        ClientCredentialsTokenRequest request = new ClientCredentialsTokenRequest(
                new NetHttpTransport(), json, new GenericUrl(System.getenv("TOKEN_URL")))
                .setClientAuthentication(new BasicAuthentication(System.getenv("CLIENT_ID"), System.getenv("CLIENT_SECRET")));
        try {
            HttpResponse response = request.executeUnparsed();
            TokenResponse token = response.parseAs(TokenResponse.class);
            System.out.println(response.getStatusCode());
            System.out.println(json.toString(token));
        } catch (TokenResponseException e) {
            System.out.println(e.getStatusCode());
            // The library parses an OAuth error body into its details. On
            // a 401 with WWW-Authenticate to a fixed-length POST (what
            // NetHttpTransport sends), HttpURLConnection drops the body:
            // both are null, and the caller sees only "401 Unauthorized".
            System.out.println(e.getDetails() != null ? json.toString(e.getDetails()) : e.getContent());
        }
    }
}
