//! Helpers for the tests that run the mesh sim in the test process
//! (`edgent::harness::mesh_sim::MeshSim`) and talk to its nodes over real HTTP.

use bytes::Bytes;
use edgent::axl::{AxlClient, PeerKey, Transport};
use edgent::harness::mesh_sim::MeshSim;
use serde::de::DeserializeOwned;

/// A client of each node's API, by node index.
pub fn clients(sim: &MeshSim) -> Vec<AxlClient> {
    (0..sim.len()).map(|i| sim.client(i).unwrap()).collect()
}

/// `from` sends `body` to `to`; panics unless the node answered 200.
pub async fn send(from: &AxlClient, to: &PeerKey, body: &'static [u8]) {
    from.send(to, Bytes::from_static(body)).await.unwrap();
}

/// The body of the next message in `c`'s queue, or None when it is empty.
pub async fn recv_body(c: &AxlClient) -> Option<Bytes> {
    c.recv().await.unwrap().map(|m| m.body)
}

/// POST `url` with an optional JSON body: (status, body text).
pub async fn post(url: &str, json: Option<&serde_json::Value>) -> (u16, String) {
    let mut req = super::http().post(url);
    if let Some(body) = json {
        req = req.json(body);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// GET `url` and decode its JSON.
pub async fn get_json<T: DeserializeOwned>(url: &str) -> T {
    super::http()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
