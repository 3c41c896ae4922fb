/**
 * The blocking read against a live ASGI server (uvicorn) seeded with `kernel_status_demo`.
 *
 * tests/integration/test_typescript_client.py runs this (`npm run test:asgi`) against a uvicorn
 * process on the test database. By hand, against `make demo` (which serves over ASGI):
 *
 *   export KERNEL_STATUS_BASE_URL=http://127.0.0.1:8000
 *   export KERNEL_STATUS_DEMO="$(.venv/bin/python manage.py kernel_status_demo --json)"
 *   (cd clients/typescript && npm run build && npm run test:asgi)
 *
 * The tests change the demo's running session and put it back as it was.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import {
  IF_NONE_MATCH_HEADER,
  KernelStatusClient,
  KernelStatusError,
  PREFER_HEADER,
  SESSION_ID_HEADER,
  WaitTimeoutError,
} from "../../src/index.js";

interface Demo {
  users: Record<"owner" | "editor" | "viewer" | "stranger" | "reporter", string>;
  sessions: Record<"idle" | "running" | "stopped" | "not_started", string>;
}

const baseUrl = process.env["KERNEL_STATUS_BASE_URL"];
const demoJson = process.env["KERNEL_STATUS_DEMO"];
if (!baseUrl || !demoJson) {
  throw new Error("Set KERNEL_STATUS_BASE_URL (an ASGI server) and KERNEL_STATUS_DEMO (see above).");
}
const { users, sessions } = JSON.parse(demoJson) as Demo;

// Event timestamps only move forward: an older event than the stored one is ignored.
let clock = Date.now() / 1000;

/** Report, as the demo's reporter, that the running session's busy cells are now `status`. */
async function report(status: "idle" | "running"): Promise<void> {
  clock += 1;
  const cells = status === "idle" ? ["train", "report"] : ["train"];
  const response = await fetch(`${baseUrl}/api/kernel/events`, {
    method: "POST",
    headers: {
      Authorization: `Token ${users.reporter}`,
      [SESSION_ID_HEADER]: sessions.running,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({
      events: cells.map((cell_id) => ({ op: "cell-op", data: { cell_id, status, timestamp: clock } })),
    }),
  });
  assert.equal(response.status, 200, await response.text());
}

interface Sent {
  prefer: string | null;
  ifNoneMatch: string | null;
}

/** A client whose fetch records what each request sent, and runs `onSend(n)` as request n goes. */
function recordingClient(sent: Sent[], onSend?: (n: number) => Promise<void>): KernelStatusClient {
  const recording: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    sent.push({ prefer: headers.get(PREFER_HEADER), ifNoneMatch: headers.get(IF_NONE_MATCH_HEADER) });
    const answer = fetch(input, init);
    await onSend?.(sent.length);
    return answer;
  };
  return new KernelStatusClient({ baseUrl: baseUrl as string, token: users.editor, fetch: recording });
}

const editor = new KernelStatusClient({ baseUrl, token: users.editor });

describe("waitForChange under ASGI", () => {
  after(async () => {
    // Leave the running session running, as the demo seeded it.
    const now = await editor.getKernelStatus(sessions.running);
    if (now.state !== "running") {
      await report("running");
    }
  });

  it("holds the read and answers 304 with Preference-Applied when nothing changes", async () => {
    const first = await editor.getKernelStatusIfChanged(sessions.idle);
    assert.equal(first.notModified, false);
    assert.ok(first.etag);
    const answer = await editor.waitForChange(sessions.idle, first.etag, { waitSeconds: 1 });
    assert.deepEqual(answer, { notModified: true, etag: first.etag, waited: 1 });
  });

  it("answers at once with the body when the tag is already stale", async () => {
    const answer = await editor.waitForChange(sessions.idle, '"stale"', { waitSeconds: 50 });
    assert.equal(answer.notModified, false);
    assert.equal(answer.waited, 50);
    if (!answer.notModified) {
      assert.deepEqual(answer.body, { state: "idle", last_activity: null });
    }
  });

  it("wakes with the new body and tag when the session changes", async () => {
    const first = await editor.getKernelStatusIfChanged(sessions.running);
    assert.ok(!first.notModified && first.body.state === "running" && first.etag);
    const waiting = editor.waitForChange(sessions.running, first.etag, { waitSeconds: 50 });
    await report("idle");
    const answer = await waiting;
    assert.equal(answer.notModified, false);
    assert.equal(answer.waited, 50);
    assert.notEqual(answer.etag, first.etag);
    if (!answer.notModified) {
      assert.equal(answer.body.state, "idle");
      assert.match(answer.body.last_activity ?? "", /^\d{4}-\d\d-\d\dT/);
    }
    await report("running");
  });

  it("rejects with the stranger's 404 without waiting", async () => {
    const stranger = new KernelStatusClient({ baseUrl, token: users.stranger });
    await assert.rejects(stranger.waitForChange(sessions.running, '"x"', { waitSeconds: 50 }), (error: unknown) => {
      assert.ok(error instanceof KernelStatusError);
      assert.equal(error.status, 404);
      assert.equal(error.detail, "Session not found.");
      return true;
    });
  });

  it("refuses a wait that is not a whole number of seconds from 1", async () => {
    for (const waitSeconds of [0, -1, 1.5, Number.NaN]) {
      await assert.rejects(editor.waitForChange(sessions.idle, '"x"', { waitSeconds }), RangeError);
    }
  });
});

describe("waitUntilIdle under ASGI: blocking reads, not polling", () => {
  it("resolves with one blocking read after the first read", async () => {
    const sent: Sent[] = [];
    // As the blocking read goes out, the kernel's cells finish.
    const client = recordingClient(sent, async (n) => (n === 2 ? report("idle") : undefined));
    const answer = await client.waitUntilIdle(sessions.running, { timeoutMs: 30_000, intervalMs: 10 });
    assert.equal(answer.state, "idle");
    assert.equal(sent.length, 2, JSON.stringify(sent));
    assert.deepEqual(sent[0], { prefer: null, ifNoneMatch: null });
    assert.match(sent[1]?.prefer ?? "", /^wait=\d+$/);
    assert.match(sent[1]?.ifNoneMatch ?? "", /^"[A-Za-z0-9_-]{22}"$/);
    await report("running");
  });

  it("times out with its one blocking read in flight, instead of polling every 10 ms", async () => {
    const sent: Sent[] = [];
    await assert.rejects(
      recordingClient(sent).waitUntilIdle(sessions.running, { timeoutMs: 1_500, intervalMs: 10 }),
      (error: unknown) => {
        assert.ok(error instanceof WaitTimeoutError, String(error));
        assert.equal(error.lastState, "running");
        return true;
      },
    );
    // The read asks for no more than the time left, in whole seconds.
    assert.deepEqual(
      sent.map((s) => s.prefer),
      [null, "wait=2"],
    );
  });
});
