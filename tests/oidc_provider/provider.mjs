// A real OpenID provider for spendstream's single sign-on tests: the certified `oidc-provider` package, its
// development interactions (an HTML login form taking any password, then a consent form) and accounts named by
// their login, so a test chooses the person it signs in as:
//   "verified:<e-mail>"   -> claims email=<e-mail>, email_verified=true
//   "unverified:<e-mail>" -> claims email=<e-mail>, email_verified=false
//
//   node provider.mjs CONFIG.json   (CONFIG: {"clients": [oidc-provider client metadata, ...]})
//
// Listens on a free 127.0.0.1 port and prints one JSON line {"issuer": "http://127.0.0.1:PORT"} when ready.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function findAccount(ctx, id) {
  const match = /^(verified|unverified):(.+@.+)$/.exec(id);
  if (!match) return undefined;
  return {
    accountId: id,
    async claims() {
      return { sub: id, email: match[2], email_verified: match[1] === 'verified' };
    },
  };
}

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'test-signing-key', use: 'sig', alg: 'RS256' };

const server = createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients,
  findAccount,
  jwks: { keys: [jwk] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  cookies: { keys: ['spendstream-test-provider-cookie-key'] },
  pkce: { required: () => true },
});
provider.on('server_error', (ctx, err) => { process.stderr.write(`server_error: ${err}\n`); });

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => { server.close(); process.exit(0); });
}
