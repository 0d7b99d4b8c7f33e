// The page the Rust side drives: the real Web Calling SDK, one CallClient per agent.
//
// The access token never crosses the DevTools protocol (whose messages a driver may log): the
// Rust side puts it behind a one-time key on its own localhost server, for this page alone, and
// passes only the key. Nothing here logs a token or an error's payload.
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

// This page's own secret, in the document the server wrote for it alone (never sent over
// DevTools): the server hands a token over only with it. Taken out of the DOM at once.
const pageSecret = (() => {
  const meta = document.querySelector('meta[name="callagent-page"]');
  const secret = meta?.content ?? "";
  meta?.remove();
  return secret;
})();

async function takeToken(key) {
  // Relative: the page's own token route (/p/PAGE/token/KEY).
  const response = await fetch(`token/${key}`, {
    method: "POST",
    cache: "no-store",
    headers: { "x-callagent-page": pageSecret },
  });
  if (!response.ok) throw new Error(`token handoff failed: HTTP ${response.status}`);
  return await response.text();
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

  // Creates an agent on a fresh CallClient (or on `clientId`'s, to probe the SDK's rules).
  async create({ key, kind, displayName, tokenRefresher, clientId, request }) {
    const started = performance.now();
    let client;
    if (request != null) pending.add(request);
    try {
      const token = await takeToken(key);
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
    const [tokenA, tokenB] = await Promise.all([takeToken(first.key), takeToken(second.key)]);
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
