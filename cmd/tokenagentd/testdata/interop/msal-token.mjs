// One short-lived process using msal-node as an Entra client would, with
// only its configuration pointed at the agent: the authority on the
// agent's HTTPS endpoint (https://127.0.0.1:PORT/TENANT, trusted through
// NODE_EXTRA_CA_CERTS), knownAuthorities naming it so that MSAL skips
// Entra's instance discovery. It prints the token's SHA-256 (never the
// token) and exits.
import { createHash } from 'node:crypto';
import { ConfidentialClientApplication } from '@azure/msal-node';

const authority = process.env.AUTHORITY;
const app = new ConfidentialClientApplication({
  auth: {
    clientId: process.env.CLIENT_ID,
    clientSecret: process.env.CLIENT_SECRET,
    authority,
    knownAuthorities: [new URL(authority).host],
  },
});
try {
  const r = await app.acquireTokenByClientCredential({ scopes: [process.env.SCOPE] });
  process.stdout.write(createHash('sha256').update(r.accessToken).digest('hex') + '\n');
  process.exit(0);
} catch (e) {
  process.stderr.write(`msal-node could not get a token: ${e.errorCode || ''} ${e.message}\n`);
  process.exit(1);
}
