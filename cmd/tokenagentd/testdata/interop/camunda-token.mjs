// One short-lived process using the Camunda 8 JavaScript SDK's own OAuth
// provider, configured only from the environment (CAMUNDA_OAUTH_URL,
// ZEEBE_CLIENT_ID, ZEEBE_CLIENT_SECRET, CAMUNDA_ZEEBE_OAUTH_AUDIENCE, …),
// asking for a Zeebe token as the SDK's Zeebe client does. It prints the
// token's SHA-256 (never the token) and exits.
import { createHash } from 'node:crypto';
import sdk from '@camunda8/sdk';

try {
  const provider = new sdk.Auth.OAuthProvider();
  const headers = await provider.getHeaders('ZEEBE');
  const token = headers.authorization.replace(/^Bearer /, '');
  process.stdout.write(createHash('sha256').update(token).digest('hex') + '\n');
  process.exit(0);
} catch (e) {
  process.stderr.write(`the Camunda SDK could not get a token: ${e.message}\n`);
  process.exit(1);
}
