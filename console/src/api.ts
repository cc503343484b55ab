// Talking to aimi: the key lives in this tab's sessionStorage only (never localStorage, never a
// URL, never a cookie), and goes out as the api-key header, so no request is made on the user's
// behalf without the page's own code adding it: a cross-site page cannot forge one.

const STORE = "aimi.console.key";

export function savedKey(): string | null {
  return sessionStorage.getItem(STORE);
}

export function saveKey(key: string): void {
  sessionStorage.setItem(STORE, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(STORE);
}

/** A refusal from aimi, with the envelope's code and message. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function failure(response: Response): Promise<ApiFailure> {
  let code = String(response.status);
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
    }
  } catch {
    // not a JSON envelope: keep the status line
  }
  return new ApiFailure(response.status, code, message);
}

export function headers(key: string | null = savedKey(), extra: Record<string, string> = {}): Record<string, string> {
  return { ...(key ? { "api-key": key } : {}), ...extra };
}

/** fetch with the key; a non-2xx answer throws an ApiFailure. */
export async function call(path: string, init: RequestInit = {}, key: string | null = savedKey()): Promise<Response> {
  const extra = (init.headers ?? {}) as Record<string, string>;
  const response = await fetch(path, { ...init, headers: headers(key, extra), credentials: "omit", cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response;
}

export async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await call(path, init)).json() as Promise<T>;
}

/** A sentence for a failure, saying what to do about the common ones. */
export function explain(error: unknown): string {
  if (error instanceof ApiFailure) {
    if (error.status === 401) return "aimi did not accept this key (401). Use the key `aimi serve` printed or saved in its state directory (api-key).";
    if (error.status === 403) return `${error.message} (403).`;
    return `${error.message} (${error.status} ${error.code}).`;
  }
  if (error instanceof DOMException && error.name === "AbortError") return "Stopped.";
  return `Could not reach aimi: ${error instanceof Error ? error.message : String(error)}.`;
}
