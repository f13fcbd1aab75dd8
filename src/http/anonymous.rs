//! What requests without an API key may take of the server. They can only
//! introspect the schema (or ask for `__typename`), but that needs no
//! account, so without a bound a few clients looping large introspections
//! would hold every core. Each client address may have only so many of them
//! open at once (`--max-anonymous-requests-per-address`); the next is
//! refused at once with `RATE_LIMITED`, before it is parsed. Behind a proxy
//! every client shares the proxy's address, and the bound is the proxy's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::AppError;

/// The open anonymous requests per client address.
#[derive(Clone)]
pub struct AnonymousRequests {
    per_address: usize,
    /// Only addresses with requests open: an entry goes with its last request.
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open anonymous request, counted until it is dropped.
pub struct AnonymousRequest {
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl AnonymousRequests {
    pub fn new(per_address: usize) -> AnonymousRequests {
        AnonymousRequests {
            per_address,
            open: Arc::default(),
        }
    }

    /// Counts one more request from `address`, or refuses it when that
    /// address has `--max-anonymous-requests-per-address` open already.
    pub fn admit(&self, address: IpAddr) -> Result<AnonymousRequest, AppError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if *count >= self.per_address {
            metrics::counter!("plangraph_anonymous_requests_refused_total").increment(1);
            return Err(AppError::RateLimited(format!(
                "This address already has {} requests without an API key open, the server's limit (--max-anonymous-requests-per-address); wait for them to finish, or send an API key (Authorization: Bearer <key>)",
                self.per_address
            )));
        }
        *count += 1;
        Ok(AnonymousRequest {
            address,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for AnonymousRequest {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_bound_and_gets_it_back() {
        let requests = AnonymousRequests::new(2);
        let one: IpAddr = "192.0.2.1".parse().expect("address");
        let other: IpAddr = "192.0.2.2".parse().expect("address");
        let first = requests.admit(one).expect("first");
        let second = requests.admit(one).expect("second");
        let refused = requests.admit(one).err().expect("third is refused");
        assert_eq!(refused.code(), "RATE_LIMITED");
        assert!(
            requests.admit(other).is_ok(),
            "another address is not held up"
        );
        drop(first);
        let again = requests
            .admit(one)
            .expect("a finished request frees its place");
        drop((second, again));
        assert!(requests.open.lock().expect("lock").is_empty());
    }
}
