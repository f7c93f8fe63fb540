//! The success rate of a (channel, method)'s create calls over a count-based sliding window
//! (Juspay's decision engine keeps the last 125 outcomes). Optimistic start: until the window
//! holds `min_volume` outcomes the channel scores 1.0, so a new or quiet channel gets its
//! share instead of being judged on three calls.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRules {
    /// Outcomes kept.
    pub window: usize,
    /// Outcomes needed before the rate is used.
    pub min_volume: usize,
    /// How sharply the rate weighs: a channel's share goes with `rate ^ sharpness`, so at 8
    /// a 95 % channel outweighs a 70 % one about 11 to 1.
    pub sharpness: i32,
}

impl Default for ScoreRules {
    fn default() -> ScoreRules {
        ScoreRules {
            window: 125,
            min_volume: 20,
            sharpness: 8,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SuccessWindow {
    outcomes: VecDeque<bool>,
}

impl SuccessWindow {
    pub fn record(&mut self, success: bool, rules: &ScoreRules) {
        while self.outcomes.len() >= rules.window.max(1) {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(success);
    }

    pub fn volume(&self) -> usize {
        self.outcomes.len()
    }

    /// The measured rate (`None` while empty).
    pub fn rate(&self) -> Option<f64> {
        let n = self.outcomes.len();
        (n > 0).then(|| self.outcomes.iter().filter(|s| **s).count() as f64 / n as f64)
    }

    /// What routing uses: the rate once there is volume, 1.0 before.
    pub fn score(&self, rules: &ScoreRules) -> f64 {
        match self.rate() {
            Some(r) if self.volume() >= rules.min_volume => r,
            _ => 1.0,
        }
    }
}
