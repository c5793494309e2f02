// When to try a refused call again: only on 429 and 503, only when presignd said how long to
// wait (Retry-After), and only if that wait is within the caller's budget. A presign that was
// refused issued nothing, so trying again is always safe.

export interface RetryOptions {
  /** Attempts after the first. Default 2; 0 turns retrying off. */
  maxRetries?: number;
  /** The longest single wait accepted, in milliseconds (default 10 000); a longer Retry-After is not waited for. */
  maxDelayMs?: number;
  /** Called before each wait (for logging or a progress hint). */
  onRetry?: (info: { attempt: number; delayMs: number; status: number }) => void;
}

export const RETRYABLE = new Set([429, 503]);

/**
 * Retry-After in milliseconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3), or
 * undefined when absent or unreadable.
 */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
