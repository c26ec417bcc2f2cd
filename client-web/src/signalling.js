// The coordinator's WebSocket protocol (docs/signalling.md): requests carry a
// reqId and are answered by `response`, `joined`, `resumed` or `error`; everything else is
// an event for the app.

export class SignalError extends Error {
  /** `retryAfterMs`: the server refused for now (queue full, rate limited) and says when to retry. */
  constructor(code, message, retryAfterMs) {
    super(message);
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

const REQUEST_TIMEOUT_MS = 20000;
/** The protocol version this client speaks (`welcome.protocol`). */
export const PROTOCOL = 2;

export class Signalling {
  /** `onEvent(msg)` gets server events; `onClose(cleanly)` once the socket ends. */
  constructor(url, { onEvent, onClose }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onClose = onClose;
    this.pending = new Map();
    this.nextId = 1;
    this.closedByUs = false;
    this.ws = null;
  }

  /** Opens the socket and waits for the server's `welcome`. */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let welcomed = false;
      ws.onmessage = (ev) => {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (msg.type === 'welcome') {
          welcomed = true;
          if (msg.protocol !== PROTOCOL) {
            // Another version's roster events would leave ours stale.
            reject(new SignalError('bad_request', `the server speaks protocol ${msg.protocol}, this page ${PROTOCOL}: reload it`));
            ws.close();
            return;
          }
          resolve();
          return;
        }
        this.dispatch(msg);
      };
      ws.onerror = () => {
        if (!welcomed) reject(new SignalError('unavailable', 'cannot reach the server'));
      };
      ws.onclose = () => {
        if (!welcomed) reject(new SignalError('unavailable', 'the server closed the connection'));
        for (const { reject: rej, timer } of this.pending.values()) {
          clearTimeout(timer);
          rej(new SignalError('unavailable', 'connection closed'));
        }
        this.pending.clear();
        this.onClose?.(this.closedByUs);
      };
    });
  }

  dispatch(msg) {
    const p = msg.reqId !== undefined ? this.pending.get(msg.reqId) : undefined;
    if (p && ['response', 'joined', 'resumed', 'error'].includes(msg.type)) {
      this.pending.delete(msg.reqId);
      clearTimeout(p.timer);
      if (msg.type === 'error') p.reject(new SignalError(msg.code, msg.message, msg.retryAfterMs));
      else p.resolve(msg.type === 'response' ? msg.data : msg);
      return;
    }
    if (msg.type === 'queued') {
      // Progress of the pending join (the server may send it without a reqId).
      const join = p ?? [...this.pending.values()].find((x) => x.onQueued);
      join?.onQueued?.(msg);
      return;
    }
    this.onEvent?.(msg);
  }

  /** Sends a request; resolves with its `data` (or the `joined` / `resumed` message). */
  request(type, fields = {}, { onQueued, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new SignalError('unavailable', 'not connected'));
    }
    const reqId = String(this.nextId++);
    return new Promise((resolve, reject) => {
      // A join may wait in the queue for minutes: it is kept alive by `queued`.
      const timer = timeoutMs ? setTimeout(() => {
        this.pending.delete(reqId);
        reject(new SignalError('timeout', `${type} got no answer`));
      }, timeoutMs) : null;
      this.pending.set(reqId, { resolve, reject, timer, onQueued });
      this.ws.send(JSON.stringify({ type, reqId, ...fields }));
    });
  }

  close() {
    this.closedByUs = true;
    this.ws?.close();
  }
}
