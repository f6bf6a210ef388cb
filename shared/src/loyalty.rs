//! Loyalty tier reference: the tier is owned by the pricing service and mirrored here; this
//! module holds what a tier means (points multiplier, benefits) as seed 000 defines it.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::money::Money;

crate::text_enum! {
    /// Loyalty tier, mirrored from the pricing service's `pricing.loyalty.tier_changed`.
    LoyaltyTier {
        Bronze => "bronze",
        Silver => "silver",
        Gold => "gold",
        Platinum => "platinum",
    }
}

/// One advantage of a tier, with a stable code other services can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Benefit {
    pub code: &'static str,
    pub description: &'static str,
}

const fn benefit(code: &'static str, description: &'static str) -> Benefit {
    Benefit { code, description }
}

/// The benefits table. Each tier keeps what the tier below has and adds to it.
///
/// | tier     | multiplier | benefits                                                            |
/// |----------|------------|---------------------------------------------------------------------|
/// | bronze   | 1.0        | points on purchases, birthday greeting                              |
/// | silver   | 1.2        | + free shipping over 50.00, 5% birthday discount                    |
/// | gold     | 1.5        | + free shipping on every order, 10% birthday discount, early access |
/// | platinum | 2.0        | + 15% birthday discount, priority support, free returns             |
const BRONZE: &[Benefit] =
    &[benefit("earn_points", "Earn points on every purchase"), benefit("birthday_greeting", "A birthday greeting")];
const SILVER: &[Benefit] = &[
    benefit("earn_points", "Earn points on every purchase, 1.2 per dollar"),
    benefit("free_shipping_over_50", "Free shipping on orders over 50.00"),
    benefit("birthday_discount_5", "5% discount during the birthday month"),
];
const GOLD: &[Benefit] = &[
    benefit("earn_points", "Earn points on every purchase, 1.5 per dollar"),
    benefit("free_shipping", "Free shipping on every order"),
    benefit("birthday_discount_10", "10% discount during the birthday month"),
    benefit("early_access_sales", "Early access to sales"),
];
const PLATINUM: &[Benefit] = &[
    benefit("earn_points", "Earn points on every purchase, 2 per dollar"),
    benefit("free_shipping", "Free shipping on every order"),
    benefit("birthday_discount_15", "15% discount during the birthday month"),
    benefit("early_access_sales", "Early access to sales"),
    benefit("priority_support", "Priority customer support"),
    benefit("free_returns", "Free returns"),
];

impl LoyaltyTier {
    /// Points per currency unit (seed 000's tiered strategy).
    pub fn points_multiplier(self) -> Decimal {
        match self {
            Self::Bronze => Decimal::new(10, 1),
            Self::Silver => Decimal::new(12, 1),
            Self::Gold => Decimal::new(15, 1),
            Self::Platinum => Decimal::new(20, 1),
        }
    }

    pub fn benefits(self) -> &'static [Benefit] {
        match self {
            Self::Bronze => BRONZE,
            Self::Silver => SILVER,
            Self::Gold => GOLD,
            Self::Platinum => PLATINUM,
        }
    }

    /// Points a purchase of `amount` earns under this tier: `floor(amount x multiplier)`.
    pub fn points_for(self, amount: Money) -> i64 {
        use rust_decimal::prelude::ToPrimitive;
        (amount.amount() * self.points_multiplier())
            .floor()
            .to_i64()
            .expect("a numeric(12,2) amount times at most 2 fits in i64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_the_floor_of_amount_times_multiplier() {
        let amount = Money::parse_positive("99.99").unwrap();
        assert_eq!(LoyaltyTier::Bronze.points_for(amount), 99);
        assert_eq!(LoyaltyTier::Silver.points_for(amount), 119);
        assert_eq!(LoyaltyTier::Gold.points_for(amount), 149);
        assert_eq!(LoyaltyTier::Platinum.points_for(amount), 199);
    }

    #[test]
    fn every_tier_has_benefits_and_higher_tiers_have_more() {
        let counts: Vec<usize> = LoyaltyTier::ALL.iter().map(|t| t.benefits().len()).collect();
        assert!(counts.iter().all(|count| *count > 0), "every tier has a benefit: {counts:?}");
        assert!(counts.windows(2).all(|pair| pair[0] <= pair[1]), "{counts:?}");
    }
}
