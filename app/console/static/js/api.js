// The console's only way to the server: /api/v1, with the tokens held in this
// module's memory (never in localStorage, sessionStorage or cookies). A reload
// logs out, by design.

const BASE = "/api/v1";
// Refresh this long before the access token expires, or a quarter of its
// lifetime when that is shorter: a short-lived token is not refreshed on every call.
const REFRESH_MARGIN_MS = 30_000;

let session = null; // { access, refresh, refreshAt }
let refreshing = null; // the refresh in flight, shared by concurrent calls
const listeners = { ended: () => {}, pending: () => {} };

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code || problem.error || null;
  }
}

/** ended(reason): the session is gone; pending(code): a password change or 2FA enrolment is due. */
export function onSession(handlers) {
  Object.assign(listeners, handlers);
}

export function loggedIn() {
  return session !== null;
}

function keep(tokens) {
  const lifetime = tokens.expires_in * 1000;
  const now = Date.now();
  session = {
    access: tokens.access_token,
    refresh: tokens.refresh_token,
    refreshAt: now + lifetime - Math.min(REFRESH_MARGIN_MS, lifetime / 4),
  };
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      /* not JSON after all */
    }
  }
  return { title: response.statusText, detail: `The server answered ${response.status}.` };
}

async function post(path, body) {
  const response = await fetch(BASE + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.json();
}

export async function login(username, password, totp) {
  const body = { username, password };
  if (totp) body.totp = totp;
  keep(await post("/auth/login", body));
}

async function refresh() {
  if (!session?.refresh) throw new ApiError(401, { detail: "Your session has ended." });
  refreshing ??= post("/auth/refresh", { refresh_token: session.refresh })
    .then(keep)
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

export async function logout() {
  if (session) {
    try {
      await call("/auth/logout", { method: "POST" });
    } finally {
      session = null;
    }
  }
}

function end(reason) {
  session = null;
  listeners.ended(reason);
}

/**
 * Call the API. `json` sends a JSON body, `form` a FormData; the answer is the
 * parsed JSON, null for 204, or a Blob for anything else. Failures throw an
 * ApiError carrying the problem (RFC 9457) the server answered.
 */
export async function call(path, { method = "GET", json, form, query } = {}) {
  if (!session) throw new ApiError(401, { detail: "Log in first." });
  if (Date.now() >= session.refreshAt) {
    try {
      await refresh();
    } catch (error) {
      end("Your session has ended; log in again.");
      throw error;
    }
  }
  let url = BASE + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      for (const one of [].concat(value)) {
        if (one !== undefined && one !== null && one !== "") params.append(name, one);
      }
    }
    if ([...params].length) url += "?" + params;
  }
  const send = () => {
    const headers = { Authorization: `Bearer ${session.access}` };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    return fetch(url, { method, headers, body, credentials: "omit" });
  };
  let response = await send();
  if (response.status === 401 && session?.refresh) {
    // The access token was refused (expired, rotated key): one refresh, one retry.
    try {
      await refresh();
    } catch (error) {
      end("Your session has ended; log in again.");
      throw error;
    }
    response = await send();
  }
  if (!response.ok) {
    const error = new ApiError(response.status, await problemOf(response));
    if (response.status === 401) end("Your session has ended; log in again.");
    if (error.code === "password_change_required" || error.code === "two_factor_enrolment_required") {
      listeners.pending(error.code);
    }
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) return response.json();
  return response.blob();
}

/** Save a Blob as a file through a temporary link (nothing leaves the page). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
