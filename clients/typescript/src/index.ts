/**
 * A small typed client for kernel_status's `GET /api/kernel/status`.
 *
 * The types come from `./schema.ts`, which openapi-typescript generates from the server's
 * OpenAPI schema (`npm run generate`), so a change to the contract breaks this file's build.
 */
import {
  kernelStatusStateEnumValues,
  type components,
  type operations,
  type paths,
} from "./schema.js";

type Operation = operations["kernel_status"];

/** `"idle" | "running" | "stopped"`. */
export type SessionState = components["schemas"]["KernelStatusStateEnum"];
/** The 200 body: `{ state, last_activity }`; `last_activity` is `null` when none is recorded. */
export type KernelStatusResponse = Required<components["schemas"]["KernelStatusResponse"]>;
/** The body of every error answer: `{ detail }`. */
export type KernelStatusErrorBody = components["schemas"]["KernelStatusError"];
/** The error statuses the schema documents: 400, 401, 403, 404, 405, 429 and 503. */
export type KernelStatusErrorStatus = Exclude<keyof Operation["responses"], 200 | 304>;

/** The endpoint's path. It is checked against the schema, so a renamed path fails to build. */
export const KERNEL_STATUS_PATH = "/api/kernel/status" satisfies keyof paths;
/** The request header that names the session. Checked against the schema too. */
export const SESSION_ID_HEADER =
  "Marimo-Session-Id" satisfies keyof Operation["parameters"]["header"];
/** The conditional request header; 304 means the answer with that `ETag` is still current. */
export const IF_NONE_MATCH_HEADER = "If-None-Match" satisfies keyof NonNullable<
  Operation["parameters"]["header"]
>;
/** The request header of a blocking read (RFC 7240): `Prefer: wait=N`. Checked against the schema. */
export const PREFER_HEADER = "Prefer" satisfies keyof NonNullable<Operation["parameters"]["header"]>;
/** The answer header that says the server honoured the wait: `Preference-Applied: wait=N`. */
export const PREFERENCE_APPLIED_HEADER = "Preference-Applied" satisfies keyof Operation["responses"][304]["headers"];
// 304 is documented, so a schema without it fails the build here.
const NOT_MODIFIED = 304 satisfies keyof Operation["responses"];
/** Every state, in the schema's order. */
export const KERNEL_STATES: readonly SessionState[] = kernelStatusStateEnumValues;

// `satisfies` fails the build if the schema gains or loses a documented error status.
const ERROR_STATUSES = {
  400: true,
  401: true,
  403: true,
  404: true,
  405: true,
  429: true,
  503: true,
} as const satisfies Record<KernelStatusErrorStatus, true>;

/** The server answered one of the documented error statuses. */
export class KernelStatusError extends Error {
  override readonly name = "KernelStatusError";

  constructor(
    /** 400, 401, 403, 404, 405, 429 (throttled) or 503 (database busy): retry the last two after a pause. */
    readonly status: KernelStatusErrorStatus,
    /** The server's `detail`, for example `"Session not found."`. */
    readonly detail: string,
    /** The session id that was asked about. */
    readonly sessionId: string,
  ) {
    super(`GET ${KERNEL_STATUS_PATH} for session ${JSON.stringify(sessionId)}: ${status} ${detail}`);
  }
}

/** The server answered something the schema does not document (a 500, or a body of the wrong shape). */
export class UnexpectedResponseError extends Error {
  override readonly name = "UnexpectedResponseError";

  constructor(
    readonly status: number,
    /** The raw response body. */
    readonly body: string,
  ) {
    super(`GET ${KERNEL_STATUS_PATH}: unexpected ${status} response: ${body.slice(0, 200)}`);
  }
}

/** `waitUntilIdle` gave up: the kernel was not idle within `timeoutMs`. */
export class WaitTimeoutError extends Error {
  override readonly name = "WaitTimeoutError";

  constructor(
    readonly sessionId: string,
    readonly timeoutMs: number,
    /** The last state seen, or `undefined` if no answer came back in time. */
    readonly lastState: SessionState | undefined,
  ) {
    super(
      `Session ${JSON.stringify(sessionId)} was not idle after ${timeoutMs} ms` +
        (lastState === undefined ? " (no answer yet)" : ` (last state: ${lastState})`),
    );
  }
}

/**
 * `waitUntilIdle` read `stopped`. A stopped kernel does not become idle by itself: the platform
 * must start a kernel first, so waiting longer would only run into the timeout.
 */
export class KernelStoppedError extends Error {
  override readonly name = "KernelStoppedError";

  constructor(
    readonly sessionId: string,
    /** The answer that said `stopped`. */
    readonly response: KernelStatusResponse,
  ) {
    super(`Session ${JSON.stringify(sessionId)} is stopped: its kernel will not become idle until one is started`);
  }
}

export interface KernelStatusClientOptions {
  /** The server's URL, optionally with a path prefix: `https://notebooks.example.com`. */
  baseUrl: string;
  /** A DRF token, sent as `Authorization: Token <token>`. Omit it to send no credentials. */
  token?: string | undefined;
  /** The fetch to use. Defaults to the global `fetch`. */
  fetch?: typeof fetch | undefined;
}

export interface RequestOptions {
  /** Aborts the request; the promise then rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

export interface ConditionalRequestOptions extends RequestOptions {
  /** The `etag` of an earlier answer: the server answers 304 (no body) if it is still current. */
  etag?: string | undefined;
}

/** An answer to a conditional read: the new body, or word that the one with `etag` is current. */
export type ConditionalAnswer =
  | { readonly notModified: false; readonly etag: string | undefined; readonly body: KernelStatusResponse }
  | { readonly notModified: true; readonly etag: string | undefined };

export interface WaitForChangeOptions extends RequestOptions {
  /**
   * The longest the server should hold the request, in whole seconds from 1. Default 30. The
   * server clamps it to its maximum (`KERNEL_STATUS_MAX_WAIT`, 60 s by default) and adds a
   * little jitter.
   */
  waitSeconds?: number | undefined;
}

/** An answer to a blocking read: a conditional answer, and whether the server held it. */
export type ChangeAnswer = ConditionalAnswer & {
  /**
   * The seconds that the server agreed to wait (its `Preference-Applied: wait=N`), or
   * `undefined` when it does not hold requests (a WSGI server answers at once): a 304 then
   * says only that nothing had changed yet.
   */
  readonly waited: number | undefined;
};

export interface WaitOptions extends RequestOptions {
  /** Give up after this long, with a `WaitTimeoutError`. Default 30 000 ms. */
  timeoutMs?: number | undefined;
  /**
   * The longest single blocking read, in seconds, when the server holds requests. Default 60
   * (the server's default maximum); each read asks for no more than the time left.
   */
  maxWaitSeconds?: number | undefined;
  /** The pause after the first non-idle answer. Each pause doubles, up to `maxIntervalMs`. Default 250 ms. */
  intervalMs?: number | undefined;
  /** The longest pause between two polls. Default 5 000 ms. */
  maxIntervalMs?: number | undefined;
}

const MAX_TIMER_MS = 2_147_483_647; // setTimeout's limit

export class KernelStatusClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;

  constructor({ baseUrl, token, fetch: fetchImpl }: KernelStatusClientOptions) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#token = token;
    this.#fetch = fetchImpl ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** The endpoint's absolute URL. */
  get url(): string {
    return this.baseUrl + KERNEL_STATUS_PATH;
  }

  /**
   * The state of the session's kernel.
   *
   * Rejects with a `KernelStatusError` (carrying `status` and `detail`) on a documented error
   * answer, and with an `UnexpectedResponseError` on anything else that is not a valid 200.
   */
  async getKernelStatus(
    sessionId: string,
    { signal }: RequestOptions = {},
  ): Promise<KernelStatusResponse> {
    const answer = await this.getKernelStatusIfChanged(sessionId, { signal });
    if (answer.notModified) {
      // Only an If-None-Match can produce a 304, and none was sent.
      throw new UnexpectedResponseError(NOT_MODIFIED, "");
    }
    return answer.body;
  }

  /**
   * A conditional read: with `etag` from an earlier answer, the server answers 304 with no
   * body (`notModified: true`) while the state and last activity are unchanged, which saves
   * the body on every poll. Errors reject as for `getKernelStatus`.
   */
  async getKernelStatusIfChanged(
    sessionId: string,
    { signal, etag }: ConditionalRequestOptions = {},
  ): Promise<ConditionalAnswer> {
    const { waited: _, ...answer } = await this.#read(sessionId, signal, etag, undefined);
    return answer;
  }

  /**
   * A blocking read (a long poll): resolves as soon as the session's answer differs from the
   * one whose tag is `etag` (`notModified: false`, with the new body and tag), or after about
   * `waitSeconds` with no change (`notModified: true`). An answer that changes nothing the
   * client can see (a heartbeat) does not resolve it.
   *
   * Only an ASGI server holds the request; it then says so in `waited`. A WSGI server answers
   * at once, as `getKernelStatusIfChanged` would, with `waited` undefined: poll after a pause
   * then (as `waitUntilIdle` does). Permission is checked before and after the wait, so a
   * share revoked meanwhile rejects with the stranger's 404. Errors reject as for
   * `getKernelStatus`; aborting `signal` rejects with its reason and frees the server's waiter.
   */
  async waitForChange(
    sessionId: string,
    etag: string,
    { signal, waitSeconds = 30 }: WaitForChangeOptions = {},
  ): Promise<ChangeAnswer> {
    if (!Number.isSafeInteger(waitSeconds) || waitSeconds < 1) {
      throw new RangeError(`waitSeconds must be a whole number of seconds from 1, not ${waitSeconds}`);
    }
    return this.#read(sessionId, signal, etag, waitSeconds);
  }

  async #read(
    sessionId: string,
    signal: AbortSignal | undefined,
    etag: string | undefined,
    waitSeconds: number | undefined,
  ): Promise<ChangeAnswer> {
    const headers: Record<string, string> = {
      Accept: "application/json",
      [SESSION_ID_HEADER]: sessionId,
    };
    if (this.#token !== undefined) {
      headers["Authorization"] = `Token ${this.#token}`;
    }
    if (etag !== undefined) {
      headers[IF_NONE_MATCH_HEADER] = etag;
    }
    if (waitSeconds !== undefined) {
      headers[PREFER_HEADER] = `wait=${waitSeconds}`;
    }
    // With If-None-Match set by the caller, fetch bypasses the HTTP cache (its mode becomes
    // "no-store"), so a browser hands the 304 to us instead of answering from its cache.
    const response = await this.#fetch(this.url, { method: "GET", headers, signal: signal ?? null });
    const newEtag = response.headers.get("ETag") ?? undefined;
    const waited = appliedWait(response.headers.get(PREFERENCE_APPLIED_HEADER));
    const text = await response.text();
    if (response.status === NOT_MODIFIED && etag !== undefined) {
      return { notModified: true, etag: newEtag ?? etag, waited };
    }
    const body = parseJson(text);
    if (response.status === 200 && isStatusBody(body)) {
      return {
        notModified: false,
        etag: newEtag,
        body: { state: body.state, last_activity: body.last_activity ?? null },
        waited,
      };
    }
    if (isErrorStatus(response.status) && isErrorBody(body)) {
      throw new KernelStatusError(response.status, body.detail, sessionId);
    }
    throw new UnexpectedResponseError(response.status, text);
  }

  /**
   * Wait until the session's kernel is idle, and resolve with that answer.
   *
   * The first read is immediate. After a non-idle answer it makes blocking reads
   * (`waitForChange`, each for at most `maxWaitSeconds` and the time left): with a server that
   * holds them (ASGI), one request per change and no sleeping. When the server answers without
   * holding (WSGI: no `Preference-Applied`), it falls back to polling: it waits `intervalMs`,
   * doubling the pause each time up to `maxIntervalMs`. After `timeoutMs` it aborts any request in flight,
   * clears its timers and rejects with a `WaitTimeoutError`. An error answer (for example a 404)
   * rejects at once with its `KernelStatusError`, and a `stopped` answer with a
   * `KernelStoppedError`: a stopped kernel (or one not started yet) does not become idle by
   * itself. Aborting `signal` rejects with its reason.
   * Each poll after the first sends the last `ETag` in `If-None-Match`, so while nothing
   * changes the server answers 304 with no body.
   */
  async waitUntilIdle(sessionId: string, options: WaitOptions = {}): Promise<KernelStatusResponse> {
    const { timeoutMs = 30_000, intervalMs = 250, maxIntervalMs = 5_000, maxWaitSeconds = 60, signal } = options;
    checkDelay("timeoutMs", timeoutMs, 0);
    if (!Number.isSafeInteger(maxWaitSeconds) || maxWaitSeconds < 1) {
      throw new RangeError(`maxWaitSeconds must be a whole number of seconds from 1, not ${maxWaitSeconds}`);
    }
    checkDelay("intervalMs", intervalMs, 1);
    checkDelay("maxIntervalMs", maxIntervalMs, intervalMs);
    signal?.throwIfAborted();

    const controller = new AbortController();
    let timedOut = false;
    let lastState: SessionState | undefined;
    const deadline = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const forwardAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener("abort", forwardAbort, { once: true });
    const giveUpAt = performance.now() + timeoutMs;
    try {
      let pause = intervalMs;
      let last: KernelStatusResponse | undefined;
      let etag: string | undefined;
      for (;;) {
        const tag = last === undefined ? undefined : etag;
        // No longer than the time left (the deadline aborts the read anyway), whole seconds.
        const left = Math.ceil((giveUpAt - performance.now()) / 1000);
        const answer = await this.#read(
          sessionId,
          controller.signal,
          tag,
          tag === undefined ? undefined : Math.max(1, Math.min(maxWaitSeconds, left)),
        );
        etag = answer.etag;
        if (!answer.notModified) {
          last = answer.body;
        }
        if (last === undefined) {
          throw new UnexpectedResponseError(NOT_MODIFIED, "");
        }
        lastState = last.state;
        if (last.state === "idle") {
          return last;
        }
        if (last.state === "stopped") {
          throw new KernelStoppedError(sessionId, last);
        }
        if (answer.waited === undefined) {
          // The server did not hold the request (WSGI, or a read before any tag): poll.
          await sleep(pause, controller.signal);
          pause = Math.min(pause * 2, maxIntervalMs);
        }
      }
    } catch (error) {
      if (timedOut) {
        throw new WaitTimeoutError(sessionId, timeoutMs, lastState);
      }
      throw error;
    } finally {
      clearTimeout(deadline);
      signal?.removeEventListener("abort", forwardAbort);
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** N from `Preference-Applied: wait=N`, or undefined. */
function appliedWait(header: string | null): number | undefined {
  const match = header === null ? null : /(?:^|[\s,;])wait=(\d+)/i.exec(header);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStatusBody(body: unknown): body is components["schemas"]["KernelStatusResponse"] {
  if (!isRecord(body) || !KERNEL_STATES.includes(body["state"] as SessionState)) {
    return false;
  }
  const lastActivity = body["last_activity"];
  return lastActivity === undefined || lastActivity === null || typeof lastActivity === "string";
}

function isErrorBody(body: unknown): body is KernelStatusErrorBody {
  return isRecord(body) && typeof body["detail"] === "string";
}

function isErrorStatus(status: number): status is KernelStatusErrorStatus {
  return Object.hasOwn(ERROR_STATUSES, status);
}

function checkDelay(name: string, value: number, minimum: number): void {
  if (!Number.isFinite(value) || value < minimum || value > MAX_TIMER_MS) {
    throw new RangeError(`${name} must be a number of milliseconds from ${minimum} to ${MAX_TIMER_MS}`);
  }
}

/** Resolve after `ms`, or reject with the signal's reason as soon as it aborts. Leaves no timer. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
