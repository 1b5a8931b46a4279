import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

/**
 * A Java service getting a client-credentials token the way its authors
 * would write it with the JDK's own HTTP client (java.net.http), in its
 * default configuration: HttpClient.newHttpClient(), no JVM flags (so a
 * dual-stack AF_INET6 socket, and HTTP/2 upgrade headers on http://), and
 * the client id and secret in HTTP Basic as RFC 6749 section 2.3.1 says.
 * Its configuration is the three variables a deployment would set:
 * TOKEN_URL, CLIENT_ID and CLIENT_SECRET.
 *
 * It prints the status it got on one line and the body on the next, and
 * leaves judging them to the test (cmd/tokenagentd/interop_java_test.go).
 */
public class HttpClientToken {
    public static void main(String[] args) throws Exception {
        String credentials = form(System.getenv("CLIENT_ID")) + ":" + form(System.getenv("CLIENT_SECRET"));
        HttpRequest request = HttpRequest.newBuilder(URI.create(System.getenv("TOKEN_URL")))
                .header("Authorization", "Basic " + Base64.getEncoder().encodeToString(credentials.getBytes(StandardCharsets.UTF_8)))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("grant_type=client_credentials"))
                .build();
        HttpResponse<String> response = HttpClient.newHttpClient().send(request, HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode());
        System.out.println(response.body());
    }

    private static String form(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }
}
