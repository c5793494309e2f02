//! An open-loop (fixed-rate) HTTP/1.1 load generator for the load benchmark.
//!
//! Request `i` is due at `start + i / rate`, whatever the server does. `connections`
//! keep-alive connections take the next due request as soon as they are free, so a stall
//! in the server does not slow the schedule down (which would hide it, as a closed-loop
//! client does: "coordinated omission"). A request's latency is counted from its due time
//! when every connection was still busy then (the server made it late), and from when it
//! was actually written otherwise (so the client's own timer granularity, ~1 ms in tokio,
//! is not billed to the server). Every latency is kept (µs) and sorted at the end: exact
//! percentiles, no histogram buckets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One run's result.
#[derive(Debug, Clone, Default)]
pub struct OpenLoop {
    /// Requests completed per second over the run (≈ the target rate unless the server fell
    /// behind).
    pub achieved: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Requests that left after their due time because every connection was busy.
    pub late: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// Sends `requests` (whole HTTP/1.1 requests, used in turn) to `addr` at `rate` per second
/// for `secs` over `connections` connections. Any non-2xx answer or socket error fails it.
pub fn run(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    rate: f64,
    secs: f64,
    connections: usize,
) -> Result<OpenLoop, String> {
    let total = (rate * secs).round() as u64;
    let slow_us: Option<u128> = std::env::var("BENCH_SLOW_MS")
        .ok()
        .and_then(|v| v.parse::<u128>().ok())
        .map(|ms| ms * 1_000);
    let interval_ns = 1e9 / rate;
    runtime()?.block_on(async move {
        let mut streams = Vec::with_capacity(connections);
        for _ in 0..connections {
            streams.push(connect(addr).await?);
        }
        let next = Arc::new(AtomicU64::new(0));
        let late = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(20);
        let mut tasks = Vec::with_capacity(connections);
        for mut stream in streams {
            let (next, late, requests) =
                (Arc::clone(&next), Arc::clone(&late), Arc::clone(&requests));
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity((total as usize / connections) + 16);
                let mut buf = Vec::with_capacity(4096);
                let mut slow = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                    let free_at = Instant::now();
                    if free_at < due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let sent = Instant::now();
                    // Busy past its due time: the server made this request late.
                    let from = if free_at > due {
                        late.fetch_add(1, Ordering::Relaxed);
                        due
                    } else {
                        sent
                    };
                    let request = &requests[i as usize % requests.len()];
                    exchange(&mut stream, request, &mut buf).await?;
                    let us = Instant::now().duration_since(from).as_micros();
                    latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    if slow_us.is_some_and(|limit| us >= limit) {
                        slow.push((SystemTime::now() - Duration::from_micros(us as u64), us));
                    }
                }
                Ok::<_, String>((latencies, slow))
            }));
        }
        let mut all = Vec::with_capacity(total as usize);
        let mut slow = Vec::new();
        for task in tasks {
            let (latencies, slow_here) = task.await.map_err(|e| format!("task: {e}"))??;
            all.extend(latencies);
            slow.extend(slow_here);
        }
        // BENCH_SLOW_MS: when the slow requests started (UTC), to set next to the server's
        // debug log.
        slow.sort();
        for (at, us) in slow.iter().take(40) {
            let at = time::OffsetDateTime::from(*at);
            println!("  slow: started {at} took {} µs", us);
        }
        let elapsed = start.elapsed().as_secs_f64().max(1e-9);
        Ok(summarize(all, elapsed, late.load(Ordering::Relaxed)))
    })
}

/// Closed loop: each connection sends its next request as soon as the last one is answered,
/// for `secs`. Returns requests per second (the peak the open-loop rates are set against).
pub fn peak(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    secs: f64,
    connections: usize,
) -> Result<f64, String> {
    runtime()?.block_on(async move {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..connections {
            let mut stream = connect(addr).await?;
            let (done, requests) = (Arc::clone(&done), Arc::clone(&requests));
            tasks.push(tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut i = c * 499;
                while Instant::now() < until {
                    exchange(&mut stream, &requests[i % requests.len()], &mut buf).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok::<_, String>(())
            }));
        }
        let started = Instant::now();
        for task in tasks {
            task.await.map_err(|e| format!("task: {e}"))??;
        }
        Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    })
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    Ok(stream)
}

/// Writes one request and reads its whole response (`Content-Length` framed, as presignd
/// answers); fails on a non-2xx status.
async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<(), String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    let (head_end, body_len) = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed mid-response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|_| "non-UTF-8 head")?;
            let status = head.split(' ').nth(1).unwrap_or("");
            if !status.starts_with('2') {
                return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(buf)));
            }
            let len = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .ok_or("response without Content-Length")?;
            break (end + 4, len);
        }
    };
    while buf.len() < head_end + body_len {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn summarize(mut us: Vec<u32>, elapsed: f64, late: u64) -> OpenLoop {
    us.sort_unstable();
    let at = |q: f64| -> u64 {
        if us.is_empty() {
            return 0;
        }
        // Nearest rank.
        let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
        u64::from(us[rank - 1])
    };
    OpenLoop {
        achieved: us.len() as f64 / elapsed,
        p50_us: at(0.50),
        p99_us: at(0.99),
        p999_us: at(0.999),
        max_us: us.last().map_or(0, |v| u64::from(*v)),
        late,
    }
}
