//! A network namespace of the test's own, joined to the test's namespace by a
//! veth pair (`10.X.Y.1` on the test's side, `10.X.Y.2` inside), with
//! iptables rules the test sets inside it (a firewall in front of a browser).
//! Rules and namespace are removed on drop. Needs root (the suite runs in
//! `unshare --net` as root).

use std::process::Command;

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace with a veth link to the test's.
pub struct Netns {
    /// Its name (`ip netns exec NAME ...`).
    pub name: String,
    /// The test's end of the link: services the namespace may reach bind here.
    pub outside: String,
    /// The namespace's own address.
    pub inside: String,
    host_link: String,
}

impl Netns {
    /// A new namespace; `tag` names it (with the process id).
    pub fn new(tag: &str) -> Self {
        let pid = std::process::id();
        let name = format!("throng-{tag}-{pid}");
        // A /30 of 10.201.0.0/16 per process, away from anything else.
        let (a, b) = ((pid >> 6) % 250, (pid % 64) * 4);
        let outside = format!("10.{}.{}.{}", 201, a, b + 1);
        let inside = format!("10.{}.{}.{}", 201, a, b + 2);
        let host_link = format!("tv{}", pid % 100_000);
        let inner_link = format!("tb{}", pid % 100_000);
        let ns = Self {
            name: name.clone(),
            outside: outside.clone(),
            inside: inside.clone(),
            host_link: host_link.clone(),
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["ip".into(), "netns".into(), "add".into(), name.clone()],
            vec![
                "ip".into(),
                "link".into(),
                "add".into(),
                host_link.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                inner_link.clone(),
                "netns".into(),
                name.clone(),
            ],
            vec![
                "ip".into(),
                "addr".into(),
                "add".into(),
                format!("{outside}/30"),
                "dev".into(),
                host_link.clone(),
            ],
            vec![
                "ip".into(),
                "link".into(),
                "set".into(),
                host_link,
                "up".into(),
            ],
        ];
        for step in &steps {
            let step: Vec<&str> = step.iter().map(String::as_str).collect();
            run(&step).unwrap_or_else(|e| panic!("network namespace: {e}"));
        }
        for inner in [
            vec!["ip", "link", "set", "lo", "up"],
            vec![
                "ip",
                "addr",
                "add",
                &format!("{inside}/30"),
                "dev",
                &inner_link,
            ],
            vec!["ip", "link", "set", &inner_link, "up"],
        ] {
            ns.exec(&inner)
                .unwrap_or_else(|e| panic!("network namespace: {e}"));
        }
        ns
    }

    /// Runs `args` inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// What `args` prints inside the namespace.
    pub fn output(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A firewall on what leaves the namespace: everything dropped but
    /// loopback, answers, and TCP to `outside` on `tcp_ports`.
    pub fn allow_only_tcp_to(&self, tcp_ports: &[u16]) {
        let mut rules: Vec<Vec<String>> = vec![
            vec!["-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"],
            vec![
                "-A",
                "OUTPUT",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect();
        for port in tcp_ports {
            rules.push(
                [
                    "-A",
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "-d",
                    &self.outside,
                    "--dport",
                    &port.to_string(),
                    "-j",
                    "ACCEPT",
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            );
        }
        rules.push(
            ["-P", "OUTPUT", "DROP"]
                .into_iter()
                .map(String::from)
                .collect(),
        );
        for rule in rules {
            let mut args = vec!["iptables"];
            args.extend(rule.iter().map(String::as_str));
            self.exec(&args).unwrap_or_else(|e| panic!("iptables: {e}"));
        }
    }

    /// Packets the firewall dropped so far (the OUTPUT policy's counter).
    pub fn dropped(&self) -> u64 {
        let listing = self.output(&["iptables", "-L", "OUTPUT", "-v", "-n", "-x"]);
        // "Chain OUTPUT (policy DROP 12 packets, 3456 bytes)"
        listing
            .lines()
            .next()
            .and_then(|l| l.split("policy DROP ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Removes the firewall's rules (the namespace stays).
    pub fn open(&self) {
        let _ = self.exec(&["iptables", "-P", "OUTPUT", "ACCEPT"]);
        let _ = self.exec(&["iptables", "-F", "OUTPUT"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.open();
        let _ = run(&["ip", "link", "del", &self.host_link]);
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}
