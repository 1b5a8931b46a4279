// An OpenID-certified authorization server (oidc-provider) for tokenagent's
// interop tests. It listens on a loopback port, prints one JSON line with
// its issuer on stdout, counts token requests (GET /__count), and exits
// when stdin closes.
//
// Clients come from the file named by CLIENTS_FILE (JSON array of
// oidc-provider client metadata), so the Go test owns the secrets and keys.
// TOKEN_TTLS (JSON object, client_id → seconds) shortens the access
// tokens of some clients, so that a test sees the agent refresh.
import http from 'node:http';
import fs from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const RESOURCE = process.env.RESOURCE || 'https://api.example.com';
const clients = JSON.parse(fs.readFileSync(process.env.CLIENTS_FILE, 'utf8'));
const tokenTTLs = JSON.parse(process.env.TOKEN_TTLS || '{}');

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-1', alg: 'RS256', use: 'sig' };

let tokenRequests = 0;
let handler = null;
const server = http.createServer((req, res) => {
  if (req.url === '/__count') {
    res.setHeader('content-type', 'text/plain');
    res.end(String(tokenRequests));
    return;
  }
  if (req.method === 'POST' && req.url.startsWith('/token')) tokenRequests++;
  handler(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    scopes: ['api:read', 'api:write'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256'],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => ({
          scope: 'api:read api:write',
          audience: RESOURCE,
          accessTokenTTL: tokenTTLs[client.clientId] ?? 3600,
          accessTokenFormat: 'jwt', // RFC 9068 JWT access tokens
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  handler = provider.callback();
  process.stdout.write(JSON.stringify({ issuer, count_url: `${issuer}/__count` }) + '\n');
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
