// REST client: JSON with the bearer token; a 401 logs out.
import { useStore } from "./store";
import type { User } from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const token = useStore.getState().auth?.accessToken;
  const headers = new Headers(init.headers);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  if (init.body) headers.set("Content-Type", "application/json");
  const resp = await fetch(path, { ...init, headers });
  if (!resp.ok) {
    let code = "http_error";
    let message = resp.statusText;
    try {
      const body = (await resp.json()) as { error?: string; message?: string };
      code = body.error ?? code;
      message = body.message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    if (resp.status === 401 && token) useStore.getState().logout();
    throw new ApiError(resp.status, code, message);
  }
  return (await resp.json()) as T;
}

export interface LoginAnswer {
  accessToken: string;
  refreshToken?: string;
  expiresIn: number;
  user: User;
}

export function login(email: string, password: string, tenantId: string): Promise<LoginAnswer> {
  return api<LoginAnswer>("/api/auth/login", {
    method: "POST",
    body: JSON.stringify({ email, password, tenantId }),
  });
}

export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  return q.toString();
}
