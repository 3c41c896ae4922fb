/**
 * The client against a live kernel_status server seeded with `kernel_status_demo`.
 *
 * tests/integration/test_typescript_client.py runs this with pytest-django's live server. To run it by
 * hand against `make demo` (the demo project turns the liveness window off, so the states
 * hold however long ago it was seeded), from the repository root:
 *
 *   export KERNEL_STATUS_BASE_URL=http://127.0.0.1:8000
 *   export KERNEL_STATUS_DEMO="$(.venv/bin/python manage.py kernel_status_demo --json)"
 *   (cd clients/typescript && npm run build && npm test)
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  IF_NONE_MATCH_HEADER,
  KERNEL_STATES,
  KERNEL_STATUS_PATH,
  KernelStatusClient,
  KernelStatusError,
  type KernelStatusErrorBody,
  type KernelStatusErrorStatus,
  KernelStoppedError,
  SESSION_ID_HEADER,
  WaitTimeoutError,
} from "../src/index.js";

interface Demo {
  users: Record<"owner" | "editor" | "viewer" | "stranger", string>;
  sessions: Record<"idle" | "running" | "stopped" | "not_started", string>;
}

function environment(): { baseUrl: string; demo: Demo } {
  const baseUrl = process.env["KERNEL_STATUS_BASE_URL"];
  const demo = process.env["KERNEL_STATUS_DEMO"];
  if (!baseUrl || !demo) {
    throw new Error(
      "Set KERNEL_STATUS_BASE_URL (the server) and KERNEL_STATUS_DEMO (the output of " +
        "`manage.py kernel_status_demo --json`). tests/integration/test_typescript_client.py sets both.",
    );
  }
  return { baseUrl, demo: JSON.parse(demo) as Demo };
}

const { baseUrl, demo } = environment();
const { users, sessions } = demo;

function clientFor(token: string | undefined, fetchImpl?: typeof fetch): KernelStatusClient {
  return new KernelStatusClient({ baseUrl, token, fetch: fetchImpl });
}

/** A fetch that drops one request header before sending. */
function without(header: string): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    headers.delete(header);
    return fetch(input, { ...init, headers });
  };
}

/** Asserts that `promise` rejects with a KernelStatusError of this status and detail. */
async function rejectsWith(
  promise: Promise<unknown>,
  status: KernelStatusErrorStatus,
  detail: string,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof KernelStatusError, `expected a KernelStatusError, got ${String(error)}`);
    assert.equal(error.status, status);
    assert.equal(error.detail, detail);
    return true;
  });
}

function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((name) => name === "Timeout").length;
}

describe("getKernelStatus: each state, as the editor", () => {
  const editor = clientFor(users.editor);
  const expected = {
    idle: "idle",
    running: "running",
    stopped: "stopped",
    not_started: "stopped",
  } as const;
  for (const [situation, state] of Object.entries(expected)) {
    it(`${situation} -> ${state}`, async () => {
      const sessionId = sessions[situation as keyof typeof expected];
      assert.deepEqual(await editor.getKernelStatus(sessionId), { state, last_activity: null });
    });
  }

  it("the owner gets the same answer", async () => {
    assert.deepEqual(await clientFor(users.owner).getKernelStatus(sessions.running), {
      state: "running",
      last_activity: null,
    });
  });

  it("the states are the schema's", () => {
    assert.deepEqual(KERNEL_STATES, ["idle", "running", "stopped"]);
  });
});

describe("getKernelStatus: each error status", () => {
  it("400 when the session header is missing", async () => {
    const client = clientFor(users.editor, without(SESSION_ID_HEADER));
    await rejectsWith(
      client.getKernelStatus(sessions.idle),
      400,
      "The Marimo-Session-Id header is required.",
    );
  });

  it("400 when the session id is empty", async () => {
    await rejectsWith(
      clientFor(users.editor).getKernelStatus(""),
      400,
      "The Marimo-Session-Id header is empty.",
    );
  });

  it("400 when the session id is too long", async () => {
    await rejectsWith(
      clientFor(users.editor).getKernelStatus("x".repeat(129)),
      400,
      "The Marimo-Session-Id header is longer than 128 characters.",
    );
  });

  it("401 without a token", async () => {
    await rejectsWith(
      clientFor(undefined).getKernelStatus(sessions.running),
      401,
      "Authentication credentials were not provided.",
    );
  });

  it("401 with a wrong token", async () => {
    await rejectsWith(clientFor("not-a-token").getKernelStatus(sessions.running), 401, "Invalid token.");
  });

  it("403 for the viewer", async () => {
    await rejectsWith(
      clientFor(users.viewer).getKernelStatus(sessions.running),
      403,
      "Edit access to this session is required.",
    );
  });

  it("404 for the stranger", async () => {
    await rejectsWith(
      clientFor(users.stranger).getKernelStatus(sessions.running),
      404,
      "Session not found.",
    );
  });

  it("404 for an unknown session", async () => {
    await rejectsWith(
      clientFor(users.editor).getKernelStatus("no-such-session"),
      404,
      "Session not found.",
    );
  });

  it("the error carries the session id and a readable message", async () => {
    await assert.rejects(clientFor(users.stranger).getKernelStatus(sessions.idle), (error: unknown) => {
      assert.ok(error instanceof KernelStatusError);
      assert.ok(error instanceof Error);
      assert.equal(error.name, "KernelStatusError");
      assert.equal(error.sessionId, sessions.idle);
      assert.match(error.message, /404 Session not found\./);
      return true;
    });
  });

  it("405 for a POST (raw fetch: the client only sends GET)", async () => {
    const response = await fetch(baseUrl + KERNEL_STATUS_PATH, {
      method: "POST",
      headers: { Authorization: `Token ${users.editor}`, [SESSION_ID_HEADER]: sessions.idle },
    });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("cache-control"), "no-store");
    const body = (await response.json()) as KernelStatusErrorBody;
    assert.deepEqual(body, { detail: 'Method "POST" not allowed.' });
  });
});

describe("getKernelStatusIfChanged: conditional reads", () => {
  it("answers 304 while the tag is current, and the body otherwise", async () => {
    const editor = clientFor(users.editor);
    const first = await editor.getKernelStatusIfChanged(sessions.running);
    assert.equal(first.notModified, false);
    assert.ok(!first.notModified);
    assert.deepEqual(first.body, { state: "running", last_activity: null });
    assert.match(first.etag ?? "", /^"[A-Za-z0-9_-]{22}"$/);
    const again = await editor.getKernelStatusIfChanged(sessions.running, { etag: first.etag });
    assert.deepEqual(again, { notModified: true, etag: first.etag });
    const stale = await editor.getKernelStatusIfChanged(sessions.running, { etag: '"stale"' });
    assert.deepEqual(stale, first);
  });

  it("a 304 has no body and revalidates", async () => {
    const headers = { Authorization: `Token ${users.editor}`, [SESSION_ID_HEADER]: sessions.idle };
    const full = await fetch(baseUrl + KERNEL_STATUS_PATH, { headers });
    assert.equal(full.headers.get("cache-control"), "private, no-cache");
    const etag = full.headers.get("etag") ?? "";
    const notModified = await fetch(baseUrl + KERNEL_STATUS_PATH, {
      headers: { ...headers, [IF_NONE_MATCH_HEADER]: etag },
    });
    assert.equal(notModified.status, 304);
    assert.equal(await notModified.text(), "");
    assert.equal(notModified.headers.get("etag"), etag);
  });

  it("no 304 for a caller without access, whatever tag it sends", async () => {
    const { etag } = await clientFor(users.editor).getKernelStatusIfChanged(sessions.running);
    await rejectsWith(
      clientFor(users.stranger).getKernelStatusIfChanged(sessions.running, { etag }),
      404,
      "Session not found.",
    );
    await rejectsWith(
      clientFor(users.viewer).getKernelStatusIfChanged(sessions.running, { etag }),
      403,
      "Edit access to this session is required.",
    );
  });
});

describe("waitForChange under WSGI (pytest-django's live server)", () => {
  it("answers at once, without Preference-Applied: the server does not hold requests", async () => {
    const editor = clientFor(users.editor);
    const first = await editor.getKernelStatusIfChanged(sessions.running);
    assert.ok(first.etag);
    const answer = await editor.waitForChange(sessions.running, first.etag, { waitSeconds: 50 });
    assert.deepEqual(answer, { notModified: true, etag: first.etag, waited: undefined });
  });
});

describe("waitUntilIdle", () => {
  it("revalidates with If-None-Match after the first poll", async () => {
    const seen: { tag: string | null; status: number }[] = [];
    const recording: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      seen.push({ tag: new Headers(init?.headers).get(IF_NONE_MATCH_HEADER), status: response.status });
      return response;
    };
    await assert.rejects(
      clientFor(users.editor, recording).waitUntilIdle(sessions.running, {
        timeoutMs: 300,
        intervalMs: 20,
        maxIntervalMs: 40,
      }),
      WaitTimeoutError,
    );
    assert.ok(seen.length >= 3, `${seen.length} polls`);
    assert.deepEqual(seen[0], { tag: null, status: 200 });
    for (const poll of seen.slice(1)) {
      assert.match(poll.tag ?? "", /^"[A-Za-z0-9_-]{22}"$/);
      assert.equal(poll.status, 304);
    }
  });

  it("resolves at once for an idle session", async () => {
    let requests = 0;
    const counting: typeof fetch = (input, init) => {
      requests += 1;
      return fetch(input, init);
    };
    const client = clientFor(users.editor, counting);
    const answer = await client.waitUntilIdle(sessions.idle, { timeoutMs: 5_000, intervalMs: 50 });
    assert.deepEqual(answer, { state: "idle", last_activity: null });
    assert.equal(requests, 1);
  });

  it("times out for a running session, backing off and leaving no timer behind", async () => {
    const starts: number[] = [];
    const recording: typeof fetch = (input, init) => {
      starts.push(performance.now());
      return fetch(input, init);
    };
    const client = clientFor(users.editor, recording);
    await client.getKernelStatus(sessions.running); // warm up the connection pool first
    starts.length = 0;
    const timersBefore = activeTimers();
    const began = performance.now();

    await assert.rejects(
      client.waitUntilIdle(sessions.running, { timeoutMs: 400, intervalMs: 20, maxIntervalMs: 80 }),
      (error: unknown) => {
        assert.ok(error instanceof WaitTimeoutError, `expected a WaitTimeoutError, got ${String(error)}`);
        assert.equal(error.sessionId, sessions.running);
        assert.equal(error.timeoutMs, 400);
        assert.equal(error.lastState, "running");
        return true;
      },
    );
    const elapsed = performance.now() - began;

    assert.ok(elapsed >= 390, `gave up after ${elapsed} ms, before the timeout`);
    assert.ok(elapsed < 2_000, `gave up after ${elapsed} ms, long after the timeout`);
    // 20, 40, 80, 80, ... ms: at most 7 polls fit in 400 ms; without backoff, 20 would.
    assert.ok(starts.length >= 2 && starts.length <= 7, `${starts.length} polls`);
    const pauses = [20, 40, 80, 80, 80, 80];
    starts.slice(1).forEach((start, i) => {
      const gap = start - (starts[i] ?? 0);
      assert.ok(gap >= (pauses[i] ?? 80) - 2, `poll ${i + 2} came ${gap} ms after the previous one`);
    });
    assert.equal(activeTimers(), timersBefore, "waitUntilIdle left a timer running");
  });

  for (const situation of ["stopped", "not_started"] as const) {
    it(`rejects at once with a KernelStoppedError for a ${situation} session`, async () => {
      let requests = 0;
      const counting: typeof fetch = (input, init) => {
        requests += 1;
        return fetch(input, init);
      };
      const timersBefore = activeTimers();
      await assert.rejects(
        clientFor(users.editor, counting).waitUntilIdle(sessions[situation], { timeoutMs: 60_000 }),
        (error: unknown) => {
          assert.ok(error instanceof KernelStoppedError, `expected a KernelStoppedError, got ${String(error)}`);
          assert.equal(error.name, "KernelStoppedError");
          assert.equal(error.sessionId, sessions[situation]);
          assert.deepEqual(error.response, { state: "stopped", last_activity: null });
          assert.match(error.message, /is stopped/);
          return true;
        },
      );
      assert.equal(requests, 1, "it polled again after reading stopped");
      assert.equal(activeTimers(), timersBefore, "waitUntilIdle left a timer running");
    });
  }

  it("rejects at once with the error answer for a session it may not see", async () => {
    const began = performance.now();
    await rejectsWith(
      clientFor(users.stranger).waitUntilIdle(sessions.running, { timeoutMs: 5_000 }),
      404,
      "Session not found.",
    );
    assert.ok(performance.now() - began < 2_000);
  });

  it("rejects with the signal's reason when aborted", async () => {
    const controller = new AbortController();
    const reason = new Error("the caller lost interest");
    const timersBefore = activeTimers();
    setTimeout(() => controller.abort(reason), 100);
    await assert.rejects(
      clientFor(users.editor).waitUntilIdle(sessions.running, {
        timeoutMs: 10_000,
        intervalMs: 20,
        signal: controller.signal,
      }),
      (error: unknown) => error === reason,
    );
    assert.equal(activeTimers(), timersBefore, "waitUntilIdle left a timer running");
  });

  it("rejects options it cannot honour", async () => {
    const client = clientFor(users.editor);
    await assert.rejects(client.waitUntilIdle(sessions.idle, { intervalMs: 0 }), RangeError);
    await assert.rejects(client.waitUntilIdle(sessions.idle, { timeoutMs: -1 }), RangeError);
    await assert.rejects(
      client.waitUntilIdle(sessions.idle, { intervalMs: 100, maxIntervalMs: 50 }),
      RangeError,
    );
  });
});
