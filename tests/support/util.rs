//! Small test utilities several suites need: reproducible random numbers and an HTTP/1.1
//! client for the admin API (no client crate for a handful of requests), the test venv's Python,
//! Java with the JDBC driver.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// xorshift64*: reproducible random constants and fuzz input without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

/// Sends one request without a body and returns the status and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let r = http_request(addr, method, path, &[]);
    (r.status, r.body)
}

/// An admin API answer.
pub struct HttpResponse {
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends one request with `headers` and no body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    HttpResponse {
        status,
        head: head.to_owned(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    }
}

/// A chunked body's data (servers chunk the answers they do not know the length of, such as
/// Prometheus' larger query results).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {size:?}"));
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// The Python interpreter with tests/python/requirements.txt installed: `PGSHAPE_PYTHON`, or
/// the `.venv` that `.ci/run` makes.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("PGSHAPE_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with the test packages: run .ci/run, or `python3 -m venv .venv && \
         .venv/bin/pip install -r tests/python/requirements.txt`, or set PGSHAPE_PYTHON"
    );
    venv
}

/// The PostgreSQL JDBC driver: `PGSHAPE_JDBC_JAR`, or Debian's `libpostgresql-jdbc-java`.
pub fn jdbc_jar() -> PathBuf {
    let jar = std::env::var_os("PGSHAPE_JDBC_JAR").map_or_else(
        || PathBuf::from("/usr/share/java/postgresql.jar"),
        PathBuf::from,
    );
    assert!(
        jar.is_file(),
        "the PostgreSQL JDBC driver is not at {}: apt-get install -y libpostgresql-jdbc-java \
         (.ci/run does), or set PGSHAPE_JDBC_JAR",
        jar.display()
    );
    jar
}

/// `java -cp <the JDBC driver> tests/java/<source>`: a single-source-file Java program run with
/// pgjdbc; the caller adds the program's arguments.
pub fn java_with_jdbc(source: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("java");
    cmd.arg("-cp").arg(jdbc_jar()).arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/java")
            .join(source),
    );
    cmd
}

/// Runs `cmd` with `input` on its stdin; when it cannot be started, the panic says `install`.
pub fn feed(mut cmd: std::process::Command, input: &str, install: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{:?} not runnable ({e}); {install}", cmd.get_program()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Percent-encodes everything but RFC 3986's unreserved characters (URL query values, libpq
/// URIs).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
