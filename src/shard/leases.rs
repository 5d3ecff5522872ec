//! A session's addresses: the lease from the server's pool or the user's
//! own (`ipv4-network`), its IPv6 twin, the networks behind the client
//! (`iroute`), and the steering that brings their packets to this shard.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use shards::Cookie;

use super::core::{LeaseError, Session, Shard};
use super::tunnel::Tunnel;
use crate::config::Nets;
use crate::pool::Pool;
use crate::sys;

impl Shard {
    /// The session's address, leased at its first CONNECT (as ocserv does:
    /// a cookie that never connects holds none), with its iroutes; later
    /// CONNECTs keep it. The error is the reason told to the client.
    pub(crate) fn lease_for(&self, cookie: &Cookie) -> Result<Ipv4Addr, LeaseError> {
        let mut sessions = self.sessions.borrow_mut();
        let s = sessions.get_mut(cookie).ok_or(LeaseError::NoSession)?;
        if let Some(lease) = s.lease {
            return Ok(lease);
        }
        let cfg = self.config_of(s.vhost.as_deref());
        let nets = cfg.nets(&s.policy);
        let pool = self.pool_for(&s.user, nets)?;
        let lease = match s.policy.explicit_ipv4 {
            Some(a) => pool.take(a).then_some(a).ok_or(LeaseError::Refused(
                "The user's explicit-ipv4 address is in use",
            ))?,
            None => {
                let wanted = cfg
                    .raw
                    .network
                    .predictable_ips
                    .then(|| crate::pool::predictable(nets.v4, &s.user));
                pool.lease(self.id.index(), wanted)
                    .ok_or(LeaseError::Refused("No free tunnel address"))?
            }
        };
        if let Err(e) = self.steer(lease, nets) {
            tracing::warn!(user = %s.user, %lease, "steering a borrowed address: {e}");
            pool.release(lease);
            return Err(LeaseError::Refused("No free tunnel address"));
        }
        if let Err(why) = self.add_iroutes(&s.user, lease, &s.policy.iroutes) {
            self.unsteer(lease, nets);
            pool.release(lease);
            return Err(LeaseError::Refused(why));
        }
        s.lease = Some(lease);
        Ok(lease)
    }

    /// Gives back the session's lease and iroutes.
    pub(super) fn release_lease(&self, s: &Session) {
        if let Some(lease) = s.lease {
            self.remove_iroutes(&s.policy.iroutes);
            self.unsteer(lease, self.config_of(s.vhost.as_deref()).nets(&s.policy));
            self.shared.pools.release(lease);
        }
    }

    /// The pool of the session's network; the first login naming a network
    /// of its own routes it (and its IPv6 network) into the TUN device.
    fn pool_for(&self, user: &str, nets: Nets) -> Result<Arc<Pool>, LeaseError> {
        let cfg = self.shared.config.get();
        let device = &cfg.raw.network.device;
        let refuse = |why: String| {
            tracing::warn!(user, "login refused: {why}");
            LeaseError::Refused("User configuration error")
        };
        if let Some(v6) = nets.v6.filter(|n| Some(*n) != cfg.ipv6_network) {
            self.shared
                .pools
                .route6_once(v6, |n| route(device, IpNet::V6(n)))
                .map_err(refuse)?;
        }
        let iroutes = &self.shared.iroutes;
        self.shared
            .pools
            .of(Some(nets.v4), |n| {
                let claimed = iroutes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .keys()
                    .find(|r| {
                        r.contains(&IpAddr::V4(n.network())) || IpNet::V4(n).contains(&r.network())
                    })
                    .copied();
                match claimed {
                    Some(r) => Err(format!("ipv4-network {n} overlaps the iroute {r}")),
                    None => route(device, IpNet::V4(n)),
                }
            })
            .map_err(refuse)
    }

    /// An address of another shard's slice (borrowed): its packets, IPv4
    /// and IPv6, are steered to this shard's TUN queue.
    fn steer(&self, lease: Ipv4Addr, nets: Nets) -> std::io::Result<()> {
        if crate::pool::owner_shard(lease, self.shared.shards) == self.id.index() {
            return Ok(());
        }
        let shard = u32::from(self.id.0);
        let steering = &self.shared.steering;
        steering.route(IpNet::V4(Ipv4Net::from(lease)), shard)?;
        if let Some(v6) = nets.ipv6_for(lease) {
            if let Err(e) = steering.route(IpNet::V6(Ipv6Net::from(v6)), shard) {
                let _ = steering.unroute(IpNet::V4(Ipv4Net::from(lease)));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Undoes `steer` before the address goes back to its owner's slice.
    fn unsteer(&self, lease: Ipv4Addr, nets: Nets) {
        if crate::pool::owner_shard(lease, self.shared.shards) == self.id.index() {
            return;
        }
        let steering = &self.shared.steering;
        let _ = steering.unroute(IpNet::V4(Ipv4Net::from(lease)));
        if let Some(v6) = nets.ipv6_for(lease) {
            let _ = steering.unroute(IpNet::V6(Ipv6Net::from(v6)));
        }
    }

    /// Routes the user's networks (iroute) into the TUN and steers them to
    /// this shard; refused if another session has one of them.
    fn add_iroutes(&self, user: &str, lease: Ipv4Addr, nets: &[IpNet]) -> Result<(), &'static str> {
        let cfg = self.shared.config.get();
        let pools: Vec<IpNet> = [
            Some(IpNet::V4(cfg.ipv4_network)),
            cfg.ipv6_network.map(IpNet::V6),
        ]
        .into_iter()
        .flatten()
        .chain(self.shared.pools.user_networks().into_iter().map(IpNet::V4))
        .collect();
        for (i, net) in nets.iter().enumerate() {
            let undo = |n: usize| self.remove_iroutes(&nets[..n]);
            if let Some(pool) = pools
                .iter()
                .find(|p| net.contains(&p.network()) || p.contains(&net.network()))
            {
                tracing::warn!(user, %net, %pool, "login refused: iroute overlaps the address pool");
                undo(i);
                return Err("User configuration error");
            }
            let claimed = {
                let mut all = self
                    .shared
                    .iroutes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match all.entry(*net) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(user.to_owned());
                        true
                    }
                }
            };
            if !claimed {
                tracing::warn!(user, %net, "login refused: iroute in use by another session");
                undo(i);
                return Err("An iroute of this user is in use by another session");
            }
            let routed = sys::tun::set_route(&cfg.raw.network.device, *net, true)
                .and_then(|()| self.shared.steering.route(*net, u32::from(self.id.0)));
            self.iroutes.borrow_mut().push((*net, lease));
            if let Err(e) = routed {
                tracing::error!(user, %net, "login refused: {e}");
                undo(i + 1);
                return Err("The user's iroute cannot be routed");
            }
            tracing::info!(user, %net, %lease, shard = %self.id, "iroute added");
        }
        Ok(())
    }

    /// Undoes `add_iroutes` (errors only logged: the route may be gone).
    fn remove_iroutes(&self, nets: &[IpNet]) {
        for net in nets {
            let mine = self.iroutes.borrow().iter().any(|(n, _)| n == net);
            if !mine {
                continue;
            }
            self.iroutes.borrow_mut().retain(|(n, _)| n != net);
            let _ = self.shared.steering.unroute(*net);
            if let Err(e) =
                sys::tun::set_route(&self.shared.config.get().raw.network.device, *net, false)
            {
                tracing::debug!(%net, "{e}");
            }
            self.shared
                .iroutes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(net);
        }
    }

    /// The tunnel a packet from the TUN goes to: its lease's, the one of a
    /// per-user IPv6 address, or the one whose client routes the
    /// destination (iroute, longest prefix).
    pub(crate) fn tunnel_for(&self, dst: IpAddr) -> Option<Rc<Tunnel>> {
        let tunnels = self.tunnels.borrow();
        let lease = match dst {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => self.leases6.borrow().get(&a).copied(),
        };
        if let Some(t) = lease.and_then(|l| tunnels.get(&l)) {
            return Some(t.clone());
        }
        let iroutes = self.iroutes.borrow();
        let lease = iroutes
            .iter()
            .filter(|(n, _)| n.contains(&dst))
            .max_by_key(|(n, _)| n.prefix_len())?
            .1;
        tunnels.get(&lease).cloned()
    }

    /// A tunnel's IPv6 address outside the server's IPv6 network (the
    /// user's `ipv6-network`) is looked up by the whole address.
    pub(super) fn map_lease6(&self, tunnel: &Tunnel, on: bool) {
        let Some(a6) = tunnel
            .lease6
            .filter(|a| !self.ipv6_network.is_some_and(|n| n.contains(a)))
        else {
            return;
        };
        let mut map = self.leases6.borrow_mut();
        if on {
            map.insert(a6, tunnel.lease);
        } else if map.get(&a6) == Some(&tunnel.lease) {
            map.remove(&a6);
        }
    }
}

/// `ip route add NET dev DEVICE`; one already there is fine.
fn route(device: &str, net: IpNet) -> Result<(), String> {
    match sys::tun::set_route(device, net, true) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(format!("routing {net} to {device}: {e}"))
        }
        _ => {
            tracing::info!(%net, device, "routed a user's own network");
            Ok(())
        }
    }
}
