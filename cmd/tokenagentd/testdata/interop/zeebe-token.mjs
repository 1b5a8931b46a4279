// One short-lived Zeebe worker process, as people run them: zeebe-node's
// ZBClient configured only from the environment (ZEEBE_AUTHORIZATION_SERVER_URL,
// ZEEBE_CLIENT_ID, ZEEBE_CLIENT_SECRET, ZEEBE_TOKEN_AUDIENCE,
// ZEEBE_TOKEN_CACHE_DIR), fetching its token through its own OAuth code.
// It prints the token's SHA-256 (never the token) and exits.
import { createHash } from 'node:crypto';
import { ZBClient } from 'zeebe-node';

const zbc = new ZBClient({ eagerConnection: false, loglevel: 'NONE' });
try {
  const token = await zbc.oAuth.getToken();
  process.stdout.write(createHash('sha256').update(token).digest('hex') + '\n');
  process.exit(0);
} catch (e) {
  process.stderr.write(`zeebe-node could not get a token: ${e.message}\n`);
  process.exit(1);
}
