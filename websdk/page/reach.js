// Which hosts the page reached and which it could not: for a creation or a connection that fails
// because the network between this browser and Azure blocks something, the host is what the
// developer's firewall team needs. Only the host of each request is kept, and whether the
// request got an answer: never its path, query, headers, body or the answer's content (the SDK's
// requests carry the access token). Imported before the SDK (entry.js), so that the SDK finds the
// wrapped `fetch`, `XMLHttpRequest` and `WebSocket` when it loads. Requests from the SDK's
// workers, if it makes any, are not seen.

// Bounded: a page that met more hosts than this keeps the first ones (the SDK talks to a handful).
const MAX_HOSTS = 32;
const hosts = new Map();

function hostOf(url) {
  try {
    const parsed = new URL(String(url), location.href);
    // The page's own origin is fulfilled from memory by the Rust side, never a network host.
    return parsed.host === location.host ? null : parsed.host;
  } catch {
    return null;
  }
}

// `answered`: the host answered (any HTTP status; a WebSocket that opened). Otherwise the
// request failed with no answer at all: refused, unresolved, timed out, reset, blocked.
function note(host, via, answered) {
  if (host == null) return;
  let entry = hosts.get(host);
  if (!entry) {
    if (hosts.size >= MAX_HOSTS) return;
    entry = { host, answered: 0, failed: 0, via: new Set() };
    hosts.set(host, entry);
  }
  entry.via.add(via);
  if (answered) entry.answered += 1;
  else entry.failed += 1;
}

const nativeFetch = globalThis.fetch;
globalThis.fetch = function fetch(input, init) {
  const host = hostOf(input instanceof Request ? input.url : input);
  return nativeFetch.call(this, input, init).then(
    (response) => {
      note(host, "fetch", true);
      return response;
    },
    (error) => {
      // Aborted by the SDK itself: not the network's doing.
      if (error?.name !== "AbortError") note(host, "fetch", false);
      throw error;
    },
  );
};

const xhrHost = new WeakMap();
const nativeOpen = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function open(method, url, ...rest) {
  if (!xhrHost.has(this)) {
    this.addEventListener("load", () => note(xhrHost.get(this), "xhr", true));
    this.addEventListener("error", () => note(xhrHost.get(this), "xhr", false));
    this.addEventListener("timeout", () => note(xhrHost.get(this), "xhr", false));
  }
  xhrHost.set(this, hostOf(url));
  return nativeOpen.call(this, method, url, ...rest);
};

const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class WebSocket extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    const host = hostOf(url);
    let opened = false;
    this.addEventListener("open", () => {
      opened = true;
      note(host, "websocket", true);
    });
    // An error after the socket opened is the connection's end, not an unreachable host.
    this.addEventListener("error", () => {
      if (!opened) note(host, "websocket", false);
    });
  }
};

// Every host met so far, in the order first met: { host, answered, failed, via: [...] }.
export function reach() {
  return [...hosts.values()].map(({ host, answered, failed, via }) => ({ host, answered, failed, via: [...via] }));
}
