//! fraud: scores a transfer. Its policy lets only transfers ask, on a request that came in
//! through the gateway.

use ligand::prelude::*;

use crate::api::{Score, ScoreRequest};

/// Recipients the fraud team has flagged.
const FLAGGED: [&str; 1] = ["mallory"];

/// The fraud service.
#[derive(Debug, Clone, Copy)]
pub struct Fraud;

#[ligand::service]
impl Fraud {
    #[post("/score", action = "score")]
    async fn score(&self, Json(request): Json<ScoreRequest>) -> Json<Score> {
        let (score, reason) = if FLAGGED.contains(&request.to.as_str()) {
            (99, format!("{} is a flagged recipient", request.to))
        } else if request.amount >= 5_000 {
            (85, "an unusually large amount".to_owned())
        } else {
            (5, "nothing unusual".to_owned())
        };
        Json(Score { score, reason })
    }
}
