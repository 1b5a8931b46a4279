// One process of tokenagent's Azure interop test: a credential of
// @azure/identity, built with no options — configured by the environment
// alone (tokenagent env PROFILE --for azure) — asks for a token for the
// scope in argv[3]. It prints one JSON line: the token, or the error.
import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";

const [kind, scope] = process.argv.slice(2);
const credential = kind === "default" ? new DefaultAzureCredential() : new ManagedIdentityCredential();
try {
  const t = await credential.getToken(scope);
  console.log(JSON.stringify({ token: t.token, expiresOnTimestamp: t.expiresOnTimestamp }));
} catch (e) {
  console.log(JSON.stringify({ error: `${e.name}: ${e.message}` }));
}
