// One short-lived process using openid-client or oauth4webapi (argv[2])
// as an unmodified OAuth client: discovery at ISSUER, then the client
// credentials grant, with neither library's insecure opt-in
// (allowInsecureRequests): the issuer is the agent's HTTPS endpoint,
// trusted through NODE_EXTRA_CA_CERTS. It prints the token's SHA-256
// (never the token) and exits.
import { createHash } from 'node:crypto';

const issuer = new URL(process.env.ISSUER);
const { CLIENT_ID: clientId, CLIENT_SECRET: secret, SCOPE: scope } = process.env;

async function viaOpenIDClient() {
  const client = await import('openid-client');
  const config = await client.discovery(issuer, clientId, secret);
  const tokens = await client.clientCredentialsGrant(config, { scope });
  return tokens.access_token;
}

async function viaOAuth4WebAPI() {
  const oauth = await import('oauth4webapi');
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer));
  const client = { client_id: clientId };
  const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretPost(secret), new URLSearchParams({ scope }));
  const result = await oauth.processClientCredentialsResponse(as, client, response);
  return result.access_token;
}

try {
  const token = process.argv[2] === 'oauth4webapi' ? await viaOAuth4WebAPI() : await viaOpenIDClient();
  process.stdout.write(createHash('sha256').update(token).digest('hex') + '\n');
  process.exit(0);
} catch (e) {
  process.stderr.write(`${process.argv[2]} could not get a token: ${e.code || ''} ${e.message}\n`);
  process.exit(1);
}
