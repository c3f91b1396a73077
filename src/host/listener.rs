//! Who listens on a unix socket path, from the kernel's own tables: `/proc/net/unix` names the
//! listening sockets bound to a path, `/proc/<pid>/fd` the sockets a process holds. A build only
//! counts as serving when its main process holds the socket systemd listens on.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

/// `__SO_ACCEPTCON` in /proc/net/unix's Flags column: the socket is listening.
const ACCEPTING: u32 = 0x0001_0000;

/// The inodes of the listening sockets bound to `path`, from /proc/net/unix's text.
fn listening_inodes(table: &str, path: &Path) -> BTreeSet<u64> {
    let path = path.to_string_lossy();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (flags, inode, bound) = (f.get(3)?, f.get(6)?, f.get(7)?);
            let listening = u32::from_str_radix(flags, 16).ok()? & ACCEPTING != 0;
            (listening && *bound == path).then(|| inode.parse().ok()).flatten()
        })
        .collect()
}

/// Whether something listens on the unix socket at `path` (in this network namespace).
pub fn is_listening(path: &Path) -> Result<bool> {
    let table = std::fs::read_to_string("/proc/net/unix").context("reading /proc/net/unix")?;
    Ok(!listening_inodes(&table, path).is_empty())
}

/// Whether process `pid` holds a listening socket bound to `path`.
pub fn holds(pid: u32, path: &Path) -> Result<bool> {
    let table = std::fs::read_to_string("/proc/net/unix").context("reading /proc/net/unix")?;
    let inodes = listening_inodes(&table, path);
    Ok(!inodes.is_empty() && socket_inodes(pid)?.iter().any(|i| inodes.contains(i)))
}

/// The TCP addresses process `pid` listens on itself (sockets it holds that are in LISTEN state
/// in /proc/net/tcp or tcp6), e.g. `127.0.0.1:8000` for a gunicorn that was not handed its socket.
pub fn own_tcp_listeners(pid: u32) -> Result<Vec<String>> {
    let mut listening = std::collections::BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        listening.extend(tcp_listeners(&text));
    }
    Ok(socket_inodes(pid)?.iter().filter_map(|i| listening.get(i).cloned()).collect())
}

/// The inodes of the sockets process `pid` holds (its `/proc/<pid>/fd` links `socket:[N]`).
fn socket_inodes(pid: u32) -> Result<Vec<u64>> {
    let fd_dir = format!("/proc/{pid}/fd");
    let fds = std::fs::read_dir(&fd_dir).with_context(|| format!("reading {fd_dir}"))?;
    Ok(fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy();
            link.strip_prefix("socket:[").and_then(|l| l.strip_suffix(']')).and_then(|i| i.parse().ok())
        })
        .collect())
}

/// Inode -> local address of the sockets in LISTEN state (`0A`) in a /proc/net/tcp{,6} table.
fn tcp_listeners(table: &str) -> Vec<(u64, String)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            if *state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            // The kernel prints the address as native-endian 32-bit words.
            let words: Vec<[u8; 4]> = (0..addr.len() / 8)
                .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).map(u32::to_ne_bytes))
                .collect::<Result<_, _>>()
                .ok()?;
            let ip: std::net::IpAddr = match words.as_slice() {
                [a] => std::net::Ipv4Addr::from(*a).into(),
                [a, b, c, d] => {
                    let bytes: [u8; 16] = [*a, *b, *c, *d].concat().try_into().ok()?;
                    std::net::Ipv6Addr::from(bytes).into()
                }
                _ => return None,
            };
            Some((inode.parse().ok()?, std::net::SocketAddr::new(ip, port).to_string()))
        })
        .collect()
}

/// How many connections wait in the accept queue of the listening unix socket at `path`, as
/// `ss` reports it (the kernel's sock_diag); None when `ss` (iproute2) is not installed or nothing
/// listens there.
pub fn queued(path: &Path) -> Result<Option<u32>> {
    let Ok(ss) = which::which("ss") else { return Ok(None) };
    let out = std::process::Command::new(ss).args(["-xlnH"]).output().context("running ss -xlnH")?;
    Ok(accept_queue(&String::from_utf8_lossy(&out.stdout), path))
}

/// The Recv-Q of the listening socket bound to `path` in `ss -xlnH` output.
fn accept_queue(ss: &str, path: &Path) -> Option<u32> {
    let path = path.to_string_lossy();
    ss.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(4) == Some(&path.as_ref())).then(|| f.get(2)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn finds_listening_sockets_by_path_only() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 111 /opt/a/dev/gunicorn.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 222 /opt/a/dev/gunicorn.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 333 /opt/a/dev/gunicorn.sockx\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 444\n";
        assert_eq!(listening_inodes(table, Path::new("/opt/a/dev/gunicorn.sock")), BTreeSet::from([111]));
    }

    #[test]
    fn the_accept_queue_comes_from_ss() {
        let ss = "u_str LISTEN 0      4096   /run/systemd/private 2830726 * 0\n\
                  u_str LISTEN 7      1024   /opt/a/dev/.relctl-next.sock 111 * 0\n";
        assert_eq!(accept_queue(ss, Path::new("/opt/a/dev/.relctl-next.sock")), Some(7));
        assert_eq!(accept_queue(ss, Path::new("/opt/a/dev/.relctl-live.sock")), None);
    }

    #[test]
    fn tcp_listeners_of_this_process_are_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert!(own_tcp_listeners(std::process::id()).unwrap().contains(&addr), "{addr}");
        drop(listener);
        assert!(!own_tcp_listeners(std::process::id()).unwrap().contains(&addr));
    }

    #[test]
    fn this_process_holds_the_socket_it_listens_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        assert!(!is_listening(&path).unwrap());
        let listener = UnixListener::bind(&path).unwrap();
        assert!(is_listening(&path).unwrap());
        assert!(holds(std::process::id(), &path).unwrap());
        assert!(!holds(1, &dir.path().join("other.sock")).unwrap());
        drop(listener);
        assert!(!is_listening(&path).unwrap(), "a stale socket file is not a listener");
    }
}
