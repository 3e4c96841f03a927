// pubsub-rpc for the browser: publish and subscribe over one WebSocket.
// A dependency-free ES module, served by `pubsub-rpc serve --ws` at /client.js.
//
//   import { connect } from "http://127.0.0.1:7701/client.js";
//   const client = await connect("ws://127.0.0.1:7701/", { clientId: "s3cret-watcher" });
//   const logins = await client.subscribe("user::logged_in");
//   for await (const value of logins) console.log("logged in:", value);
//
// Every message is standard JSON-RPC 2.0, one per WebSocket text message.
// Requests may run concurrently; each waits at most `requestTimeout` ms.
// Failures reject with a PubSubError whose `message` is the server's exact
// text and whose `code` is its error code (null for local failures).

const CLOSED_LOCALLY = "The client was closed before the server responded to this request.";

/** An error from the server (with its `code`) or from the connection (`code` null). */
export class PubSubError extends Error {
  constructor(message, code = null) {
    super(message);
    this.name = "PubSubError";
    this.code = code;
  }
}

/**
 * Open a client: resolves once the WebSocket is open.
 * Options: clientId (omit on a trusted server for an ad-hoc identity),
 * requestTimeout (ms, default 10000), subscriptionBuffer (values one
 * subscription holds unread before it is ended, default 1000),
 * connectTimeout (ms, default requestTimeout).
 */
export function connect(url, options = {}) {
  const connectTimeout = options.connectTimeout ?? options.requestTimeout ?? 10000;
  return new Promise((resolve, reject) => {
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      reject(new PubSubError(`Connecting to ${url} failed: ${error.message}`));
      return;
    }
    let timer = null;
    const cleanup = () => {
      clearTimeout(timer);
      socket.removeEventListener("open", onOpen);
      socket.removeEventListener("close", onClose);
    };
    const fail = (why) => {
      cleanup();
      reject(new PubSubError(`Connecting to ${url} failed: ${why}.`));
    };
    const onOpen = () => {
      cleanup();
      resolve(new Client(socket, options));
    };
    const onClose = (event) => fail(`the connection closed${describeClose(event)}`);
    timer = setTimeout(() => {
      socket.close();
      fail(`no WebSocket handshake within ${connectTimeout / 1000} seconds`);
    }, connectTimeout);
    socket.addEventListener("open", onOpen);
    socket.addEventListener("close", onClose);
  });
}

function describeClose(event) {
  return ` (WebSocket code ${event.code}${event.reason ? `: ${event.reason}` : ""})`;
}

/** A connection to a pub/sub server; get one from `connect`. */
export class Client {
  #socket;
  #nextId = 1;
  #pending = new Map(); // request id -> {resolve, reject, timer, onSuccess}
  #subscriptions = new Map(); // subscription id -> Subscription
  #lost = null; // why the connection is gone, once it is
  #closed;

  constructor(socket, { clientId = null, requestTimeout = 10000, subscriptionBuffer = 1000 } = {}) {
    this.#socket = socket;
    /** The id requests act as: the configured one, or the ad-hoc one a trusted server gave. */
    this.clientId = clientId || null;
    this.requestTimeout = requestTimeout;
    this.subscriptionBuffer = subscriptionBuffer;
    /** What the server said when it closed the connection ({code, message}), if it did. */
    this.serverClosing = null;
    this.#closed = new Promise((resolve) => {
      socket.addEventListener("close", (event) => {
        const reason = this.serverClosing?.message || `The server closed the connection${describeClose(event)}.`;
        this.#lose(reason);
        resolve();
      });
    });
    socket.addEventListener("message", (event) => this.#receive(event.data));
  }

  /** Whether the connection is gone (closed by either side). */
  get closed() {
    return this.#lost !== null;
  }

  /** Publish `value` (anything JSON can represent); resolves to how many subscriptions got it. */
  async publish(eventName, value) {
    const result = await this.#request("publish", { event_name: eventName, value });
    return result.listeners;
  }

  /** Subscribe to `eventName`; resolves to a Subscription, an async iterator of the values. */
  subscribe(eventName) {
    // The Subscription is made the moment the answer arrives, so an event
    // right behind the answer finds it.
    return this.#request("subscribe", { event_name: eventName }, (result) => {
      const subscription = new Subscription(this, result.subscription_id, eventName, this.subscriptionBuffer);
      this.#subscriptions.set(subscription.id, subscription);
      return subscription;
    });
  }

  /** End a subscription (a Subscription or its id); its iterator finishes after the values it holds. */
  async unsubscribe(subscription) {
    const id = typeof subscription === "string" ? subscription : subscription.id;
    const local = this.#subscriptions.get(id);
    if (local === undefined) return; // ended already
    await this.#request("unsubscribe", { subscription_id: id });
    this.#subscriptions.delete(id);
    local._end(null);
  }

  /** Ask the server to answer: proves the connection works end to end. */
  async ping() {
    await this.#request("ping", {});
  }

  /** Close the connection: waiting requests fail, subscriptions end cleanly. Resolves once closed. */
  close() {
    this.#lose(CLOSED_LOCALLY, true);
    this.#socket.close(1000);
    return this.#closed;
  }

  #request(method, params, onSuccess = (result) => result) {
    if (this.#lost !== null) return Promise.reject(new PubSubError(this.#lost));
    const id = this.#nextId++;
    if (this.clientId !== null) params.client_id = this.clientId;
    let text;
    try {
      text = JSON.stringify({ jsonrpc: "2.0", method, params, id });
    } catch (error) {
      return Promise.reject(error); // a value JSON cannot represent
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        const seconds = this.requestTimeout / 1000;
        reject(new PubSubError(`The server did not answer the "${method}" request within ${seconds} seconds.`));
      }, this.requestTimeout);
      this.#pending.set(id, { resolve, reject, timer, onSuccess });
      this.#socket.send(text);
    });
  }

  #receive(data) {
    if (typeof data !== "string") return; // the server sends text messages only
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not JSON: nothing to route
    }
    for (const item of Array.isArray(message) ? message : [message]) {
      if (item !== null && typeof item === "object") this.#handle(item);
    }
  }

  #handle(message) {
    const params = message.params ?? {};
    if (message.method === "event") {
      const subscription = this.#subscriptions.get(params.subscription_id);
      if (subscription !== undefined && !subscription._deliver(params.value)) this.#overflowed(subscription);
    } else if (message.method === "closing") {
      this.serverClosing = { code: params.code ?? null, message: String(params.message ?? "") };
    } else if ("result" in message || "error" in message) {
      const pending = this.#pending.get(message.id);
      if (pending === undefined) return; // late, after a timeout
      this.#pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.error) {
        const error = message.error;
        pending.reject(new PubSubError(String(error.message ?? "The server sent no error message."), error.code ?? null));
        return;
      }
      const result = message.result ?? {};
      if (this.clientId === null && typeof result.client_id === "string" && result.client_id) {
        this.clientId = result.client_id; // a trusted server minted an identity for us
      }
      pending.resolve(pending.onSuccess(result));
    }
  }

  #overflowed(subscription) {
    // Rather than block the connection or silently drop values, end this one
    // subscription (after what it holds) and carry on, as the Python client does.
    const limit = this.subscriptionBuffer;
    subscription._end(
      new PubSubError(
        `The subscription to "${subscription.eventName}" was ended: more than ${limit} values were waiting to be read.`,
        -32007,
      ),
    );
    this.#subscriptions.delete(subscription.id);
    this.#request("unsubscribe", { subscription_id: subscription.id }).catch(() => {});
  }

  #lose(reason, local = false) {
    if (this.#lost !== null) return;
    this.#lost = reason;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new PubSubError(reason));
    }
    this.#pending.clear();
    for (const subscription of this.#subscriptions.values()) subscription._end(local ? null : new PubSubError(reason));
    this.#subscriptions.clear();
  }
}

/** The values published under one event name: `for await (const value of subscription)`. */
export class Subscription {
  #client;
  #maxBuffer;
  #buffer = [];
  #waiters = [];
  #ended = false;
  #error = null;

  constructor(client, id, eventName, maxBuffer) {
    this.#client = client;
    this.#maxBuffer = maxBuffer;
    /** The server's id of this subscription. */
    this.id = id;
    this.eventName = eventName;
  }

  /** Whether values may still arrive. */
  get active() {
    return !this.#ended;
  }

  /** Unsubscribe; iteration ends after the values already received. */
  unsubscribe() {
    return this.#client.unsubscribe(this);
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next() {
    if (this.#buffer.length > 0) return Promise.resolve({ value: this.#buffer.shift(), done: false });
    if (this.#ended) {
      const error = this.#error;
      this.#error = null;
      return error === null ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Leaving a `for await` loop early unsubscribes. */
  async return() {
    if (!this.#ended) {
      try {
        await this.unsubscribe();
      } catch {
        this._end(null); // the connection is gone: nothing left to unsubscribe from
      }
    }
    return { value: undefined, done: true };
  }

  // Called by the Client: false if the buffer is full.
  _deliver(value) {
    if (this.#ended) return true;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({ value, done: false });
      return true;
    }
    if (this.#buffer.length >= this.#maxBuffer) return false;
    this.#buffer.push(value);
    return true;
  }

  _end(error) {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    for (const waiter of this.#waiters.splice(0)) {
      if (this.#error !== null) {
        waiter.reject(this.#error);
        this.#error = null;
      } else {
        waiter.resolve({ value: undefined, done: true });
      }
    }
  }
}
