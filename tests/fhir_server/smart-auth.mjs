// SMART Backend Services authorization as a national registry runs it (client credentials with a
// signed JWT client assertion, https://hl7.org/fhir/smart-app-launch/backend-services.html):
//
// - the registry registers each system client with its public keys (a JWKS) and allowed scopes;
// - POST /auth/token (form-encoded): grant_type=client_credentials, scope, client_assertion_type =
//   urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_assertion = a JWT whose
//   signature (RS384 or ES384, key picked by the header's kid) verifies with a registered key,
//   iss = sub = the client id, aud = this token endpoint, exp in the future and at most 5 minutes
//   ahead, jti never seen before → {access_token, token_type: "bearer", expires_in, scope};
//   anything else → 400/401 {error, error_description};
// - FHIR calls carry `Authorization: Bearer <access_token>`; an unknown, expired or revoked token
//   gets 401, a scope that does not cover the resource type and interaction 403.

import { createPublicKey, randomBytes, verify } from 'node:crypto';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_ASSERTION_SECONDS = 300;
const SKEW_SECONDS = 10;
const DEFAULT_TTL = 300;
const ALGORITHMS = { RS384: 'RSA', ES384: 'EC' };

const now = () => Date.now() / 1000;

function decodePart(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/** scope string → [{type, read, write}] (SMART v1 `.read/.write/.*` and v2 `.cruds`). */
function parseScopes(scope) {
  const rules = [];
  for (const item of (scope ?? '').split(/\s+/).filter(Boolean)) {
    const match = /^system\/([A-Za-z*]+)\.(read|write|\*|[cruds]+)$/.exec(item);
    if (!match) continue;
    const [, type, access] = match;
    const v1 = access === 'read' || access === 'write' || access === '*';
    const read = v1 ? access !== 'write' : /[rs]/.test(access);
    const write = v1 ? access !== 'read' : /[cud]/.test(access);
    rules.push({ item, type, read, write });
  }
  return rules;
}

export class SmartAuth {
  constructor({ required }) {
    this.required = required;
    this.reset();
  }

  reset() {
    this.clients = new Map(); // client_id → {jwks, scope}
    this.tokens = new Map(); // access token → {client, scope, rules, exp, revoked}
    this.jtis = new Map(); // jti → exp
    this.ttl = DEFAULT_TTL;
    this.stats = { token_requests: 0, issued: 0, refused: 0, refusals: [], rejected_tokens: 0 };
  }

  configuration(tokenEndpoint) {
    return {
      token_endpoint: tokenEndpoint,
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: Object.keys(ALGORITHMS),
      grant_types_supported: ['client_credentials'],
      scopes_supported: ['system/*.read', 'system/*.write', 'system/*.*'],
      capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
    };
  }

  /** POST /auth/token → [status, body]. */
  token(method, form, tokenEndpoint) {
    this.stats.token_requests++;
    const refuse = (status, error, description) => {
      this.stats.refused++;
      this.stats.refusals.push(description);
      return [status, { error, error_description: description }];
    };
    if (method !== 'POST') return refuse(405, 'invalid_request', 'use POST');
    if (form.get('grant_type') !== 'client_credentials') {
      return refuse(400, 'unsupported_grant_type', 'grant_type must be client_credentials');
    }
    if (form.get('client_assertion_type') !== ASSERTION_TYPE) {
      return refuse(400, 'invalid_request', `client_assertion_type must be ${ASSERTION_TYPE}`);
    }
    const parts = (form.get('client_assertion') ?? '').split('.');
    if (parts.length !== 3) return refuse(401, 'invalid_client', 'client_assertion is not a signed JWT');
    let header, claims;
    try {
      header = decodePart(parts[0]);
      claims = decodePart(parts[1]);
    } catch {
      return refuse(401, 'invalid_client', 'client_assertion cannot be decoded');
    }
    const kty = ALGORITHMS[header.alg];
    if (!kty) return refuse(401, 'invalid_client', `alg ${header.alg} not accepted (RS384, ES384)`);
    const client = this.clients.get(claims.iss);
    if (!client) return refuse(401, 'invalid_client', `unknown client ${claims.iss}`);
    if (claims.sub !== claims.iss) return refuse(401, 'invalid_client', 'sub must equal iss (the client id)');
    if (claims.aud !== tokenEndpoint) return refuse(401, 'invalid_client', `aud must be ${tokenEndpoint}`);
    const t = now();
    if (typeof claims.exp !== 'number' || claims.exp <= t - SKEW_SECONDS) {
      return refuse(401, 'invalid_client', 'client_assertion expired');
    }
    if (claims.exp > t + MAX_ASSERTION_SECONDS + SKEW_SECONDS) {
      return refuse(401, 'invalid_client', 'exp is more than 5 minutes ahead');
    }
    const candidates = (client.jwks.keys ?? []).filter(
      (k) => k.kty === kty && (!header.kid || k.kid === header.kid)
    );
    if (!candidates.length) return refuse(401, 'invalid_client', `no registered key with kid ${header.kid}`);
    const data = Buffer.from(`${parts[0]}.${parts[1]}`);
    const signature = Buffer.from(parts[2], 'base64url');
    const valid = candidates.some((jwk) => {
      try {
        const key = createPublicKey({ key: jwk, format: 'jwk' });
        return verify('sha384', data, kty === 'EC' ? { key, dsaEncoding: 'ieee-p1363' } : key, signature);
      } catch {
        return false;
      }
    });
    if (!valid) return refuse(401, 'invalid_client', 'client_assertion signature does not verify');
    if (typeof claims.jti !== 'string' || !claims.jti) return refuse(401, 'invalid_client', 'jti missing');
    for (const [jti, exp] of this.jtis) if (exp < t - SKEW_SECONDS) this.jtis.delete(jti);
    if (this.jtis.has(claims.jti)) return refuse(401, 'invalid_client', 'jti already used');
    this.jtis.set(claims.jti, claims.exp);

    const allowed = parseScopes(client.scope);
    const requested = parseScopes(form.get('scope'));
    const granted = requested.filter((r) =>
      allowed.some((a) => (a.type === '*' || a.type === r.type) && (a.read || !r.read) && (a.write || !r.write))
    );
    if (!granted.length) return refuse(400, 'invalid_scope', `none of the requested scopes is allowed for ${claims.iss}`);
    const scope = granted.map((g) => g.item).join(' ');
    const accessToken = randomBytes(24).toString('base64url');
    this.tokens.set(accessToken, { client: claims.iss, scope, rules: granted, exp: t + this.ttl, revoked: false });
    this.stats.issued++;
    return [200, { access_token: accessToken, token_type: 'bearer', expires_in: this.ttl, scope }];
  }

  /** The live grant of an `Authorization: Bearer …` header, or null (counted as rejected if a token was given). */
  grant(authorization) {
    if (!authorization.startsWith('Bearer ')) return null;
    const found = this.tokens.get(authorization.slice('Bearer '.length));
    if (!found) return null;
    if (found.revoked || found.exp <= now()) {
      this.stats.rejected_tokens++;
      return null;
    }
    return found;
  }

  allows(grant, method, resourceType) {
    const write = !(method === 'GET' || method === 'HEAD');
    return grant.rules.some((r) => (r.type === '*' || r.type === resourceType) && (write ? r.write : r.read));
  }

  /** /__admin/smart/<call> → [status, body]. */
  admin(call, params, body) {
    if (call === 'client') {
      // POST {client_id, jwks, scope}
      const { client_id: clientId, jwks, scope } = JSON.parse(body || '{}');
      if (!clientId || !jwks?.keys) return [400, { error: 'client_id and jwks.keys needed' }];
      this.clients.set(clientId, { jwks, scope: scope ?? 'system/*.*' });
      return [200, { registered: clientId }];
    }
    if (call === 'revoke') {
      for (const grant of this.tokens.values()) grant.revoked = true;
      return [200, { revoked: this.tokens.size }];
    }
    if (call === 'ttl') {
      this.ttl = Number(params.get('seconds') ?? DEFAULT_TTL);
      return [200, { ttl: this.ttl }];
    }
    if (call === 'stats') return [200, { ...this.stats, live_tokens: [...this.tokens.values()].filter((g) => !g.revoked && g.exp > now()).length }];
    return [404, { error: 'unknown smart admin call' }];
  }
}
