// The page the Rust side drives: the real Web Calling SDK, one CallClient per agent.
//
// The access token never crosses the DevTools protocol readable (a driver may log every message,
// and the browser may run on another host): the page makes an ECDH P-256 key pair as it loads
// (its private key not extractable) and publishes the public half; the Rust side seals each token
// to it (a one-time key of its own, HKDF-SHA256, AES-256-GCM; websdk/src/seal.rs) and the page
// opens it here. Nothing here logs a token or an error's payload.
// reach.js first: it wraps what the SDK sends requests with before the SDK loads.
import { reach } from "./reach.js";
import { CallClient } from "@azure/communication-calling";
import { AzureCommunicationTokenCredential } from "@azure/communication-common";

const agents = new Map();
let nextId = 1;
// Creations in flight by request number, those whose Rust owner went away (dropped, timed out)
// meanwhile (their agent is disposed as soon as it exists), and each live agent's request (for an
// owner that went away just after the page answered). All bounded by what is in flight or alive.
const pending = new Set();
const abandoned = new Set();
const created = new Map();

const CURVE = { name: "ECDH", namedCurve: "P-256" };
const INFO = new TextEncoder().encode("callagent-websdk token v1");
const keyPair = crypto.subtle.generateKey(CURVE, false, ["deriveBits"]);

const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const toBase64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));

// Opens a token sealed to this page: { epk, nonce, ct }, base64.
async function openToken(sealed) {
  const { privateKey } = await keyPair;
  const theirs = await crypto.subtle.importKey("raw", fromBase64(sealed.epk), CURVE, false, []);
  const shared = await crypto.subtle.deriveBits({ name: "ECDH", public: theirs }, privateKey, 256);
  const hkdf = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  const key = await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: INFO },
    hkdf,
    { name: "AES-GCM", length: 256 },
    false,
    ["decrypt"],
  );
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64(sealed.nonce) }, key, fromBase64(sealed.ct));
  return new TextDecoder().decode(plain);
}

// What the SDK threw, read from its public getters (code, subCode, resultCategories are
// getters, not enumerable fields) and as JSON.stringify gives it.
function describe(e) {
  return {
    code: typeof e?.code === "number" ? e.code : null,
    subCode: typeof e?.subCode === "number" ? e.subCode : null,
    resultCategories: Array.isArray(e?.resultCategories) ? e.resultCategories : null,
    name: typeof e?.name === "string" ? e.name : String(typeof e),
    message: typeof e?.message === "string" ? e.message : String(e),
    json: (() => { try { return JSON.stringify(e) ?? null; } catch { return null; } })(),
  };
}

// CallClients free for another creation. A page keeps every CallClient it makes and reuses it:
// the SDK keeps a CallClient's background work after `dispose()`, so a long-lived shared page
// that made a new one per creation slowed down with each (its 60th creation took 10 s, the next
// ones 20–35 s), while a reused one makes creation after creation at a steady few milliseconds.
// The SDK allows a new agent on a CallClient whose agent was disposed, or whose creation failed.
// Bounded by the most creations and agents the page ever held at once.
const freeClients = [];
let clientsMade = 0;

function newClient() {
  clientsMade += 1;
  return new CallClient();
}

function takeClient() {
  return freeClients.pop() ?? newClient();
}

// Disposes an agent and gives its CallClient back for the next creation. A client whose agent
// would not dispose is not reused (it may still hold that agent).
async function release(agent, client) {
  try {
    await agent?.dispose();
  } catch {
    return;
  }
  if (client) freeClients.push(client);
}

function watch(id, agent) {
  const entry = { agent, client: null, changes: [] };
  agent.on("connectionStateChanged", (event) => {
    entry.changes.push({ state: event.newValue, reason: event.reason ?? null, at: performance.now() });
  });
  return entry;
}

window.callagent = {
  // The SDK version the page was bundled with (build.sh defines it).
  sdkVersion: typeof SDK_VERSION === "string" ? SDK_VERSION : "unknown",

  // This page's public key (base64 of the raw P-256 point): tokens are sealed to it.
  async publicKey() {
    return toBase64(await crypto.subtle.exportKey("raw", (await keyPair).publicKey));
  },

  // Creates an agent on a fresh CallClient (or on `clientId`'s, to probe the SDK's rules).
  async create({ sealed, kind, displayName, tokenRefresher, clientId, request }) {
    const started = performance.now();
    let client;
    if (request != null) pending.add(request);
    try {
      const token = await openToken(sealed);
      const options = tokenRefresher
        ? { token, tokenRefresher: async () => token, refreshProactively: false }
        : token;
      const credential = new AzureCommunicationTokenCredential(options);
      client = clientId ? agents.get(clientId)?.client : takeClient();
      if (!client) throw new Error(`no CallClient for agent ${clientId}`);
      const agentOptions = displayName == null ? {} : { displayName };
      const agent = kind === "teams"
        ? await client.createTeamsCallAgent(credential, agentOptions)
        : await client.createCallAgent(credential, agentOptions);
      for (const [existing, entry] of agents) {
        if (entry.agent === agent) {
          return { ok: true, id: existing, state: agent.connectionState, same: true, ms: performance.now() - started };
        }
      }
      if (request != null && abandoned.delete(request)) {
        // Its owner is gone: nobody will ever use or dispose this agent.
        await release(agent, clientId ? null : client);
        return { ok: false, error: describe(new Error("abandoned")), ms: performance.now() - started };
      }
      const id = nextId++;
      const entry = watch(id, agent);
      entry.client = client;
      agents.set(id, entry);
      if (request != null) created.set(request, id);
      return { ok: true, id, state: agent.connectionState, same: false, ms: performance.now() - started };
    } catch (e) {
      // A CallClient of its own that made no agent: free for the next creation.
      if (client && !clientId) freeClients.push(client);
      return { ok: false, error: describe(e), ms: performance.now() - started };
    } finally {
      pending.delete(request);
      abandoned.delete(request);
    }
  },

  // Two creations at once (or `delayMs` apart), on one CallClient or on two: how the SDK
  // treats a second creation while the first is pending. For conformance probing.
  async race({ first, second, sameClient, delayMs }) {
    // Fresh clients: the probe is of what the SDK does with new ones.
    const clientA = newClient();
    const clientB = sameClient ? clientA : newClient();
    // Both tokens first, so that with no delay both creations start in the same tick.
    const [tokenA, tokenB] = await Promise.all([openToken(first.sealed), openToken(second.sealed)]);
    const one = async (client, token, kind) => {
      const started = performance.now();
      try {
        const credential = new AzureCommunicationTokenCredential(token);
        const agent = kind === "teams" ? await client.createTeamsCallAgent(credential) : await client.createCallAgent(credential);
        return { ok: true, agent, ms: performance.now() - started };
      } catch (e) {
        return { ok: false, error: describe(e), ms: performance.now() - started };
      }
    };
    const a = one(clientA, tokenA, first.kind);
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const b = one(clientB, tokenB, second.kind);
    const [ra, rb] = await Promise.all([a, b]);
    const same = ra.ok && rb.ok && ra.agent === rb.agent;
    const strip = (r) => {
      if (!r.ok) return r;
      const id = nextId++;
      agents.set(id, { ...watch(id, r.agent), client: r === ra ? clientA : clientB });
      return { ok: true, id, state: r.agent.connectionState, ms: r.ms };
    };
    return { a: strip(ra), b: same ? { ...strip(rb), same: true } : strip(rb), same };
  },

  // The owner of creation `request` went away: dispose its agent now or as soon as it exists.
  async abandon(request) {
    if (pending.has(request)) {
      abandoned.add(request);
      return { ok: true };
    }
    const id = created.get(request);
    return id === undefined ? { ok: true } : await window.callagent.dispose(id);
  },

  // What the page holds: live agents, creations in flight, and the CallClients it has made.
  // The hosts the page's SDK sent requests to since the page loaded, and how many got no answer
  // (reach.js): hosts only, never a request's content.
  reach() {
    return reach();
  },

  census() {
    return { agents: agents.size, creating: pending.size, clients: clientsMade };
  },

  state(id) {
    const entry = agents.get(id);
    return entry ? { state: entry.agent.connectionState, changes: entry.changes } : null;
  },

  async dispose(id) {
    const entry = agents.get(id);
    if (!entry) return { ok: true };
    agents.delete(id);
    for (const [request, agent] of created) if (agent === id) created.delete(request);
    try {
      await entry.agent.dispose();
      // Its CallClient is free again, unless another live agent shares it (probing only).
      const shared = [...agents.values()].some((other) => other.client === entry.client);
      if (!shared) freeClients.push(entry.client);
      return { ok: true };
    } catch (e) {
      return { ok: false, error: describe(e) };
    }
  },
};
window.callagentReady = true;
