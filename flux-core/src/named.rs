//! Fieldless enums whose variants have names (`queued`, `leader-kill`): [`named_enum!`]
//! declares one, each name derived from its variant's identifier the way serde derives the
//! variant's JSON name.

/// Declares a fieldless enum whose variants each have a name, with
///
/// - `ALL`: every variant, in declaration order;
/// - `as_str`: a variant's name;
/// - `parse`: the variant of a name (`None` for any other text);
/// - `names`: every name, joined by `, `;
/// - a `Display` that writes the name.
///
/// The names come from the identifiers by the enum's `#[strum(serialize_all = "…")]`, which
/// goes beside its `#[serde(rename_all = "…")]` with the same case, so that a variant's name
/// is its JSON form (a test here holds them equal). The enum's other attributes (derives,
/// serde) are kept as written.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $ty:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident
            ),+ $(,)?
        }
    ) => {
        #[derive(strum::IntoStaticStr)]
        $(#[$meta])*
        $vis enum $ty {
            $($(#[$vmeta])* $variant,)+
        }

        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: [$ty; [$(stringify!($variant)),+].len()] = [$($ty::$variant),+];

            /// The variant's name.
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// The variant named `name`.
            pub fn parse(name: &str) -> Option<$ty> {
                $ty::ALL.into_iter().find(|v| v.as_str() == name)
            }

            /// Every name, in declaration order, joined by `, ` (for a message that lists
            /// what is accepted).
            pub fn names() -> String {
                $ty::ALL.map($ty::as_str).join(", ")
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    named_enum! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[strum(serialize_all = "kebab-case")]
        enum Light {
            Red,
            /// Between the two.
            DarkAmber,
            Green,
        }
    }

    #[test]
    fn each_variant_has_its_name_both_ways_in_declaration_order() {
        assert_eq!(Light::ALL, [Light::Red, Light::DarkAmber, Light::Green]);
        assert_eq!(
            Light::ALL.map(Light::as_str),
            ["red", "dark-amber", "green"]
        );
        assert_eq!(Light::parse("dark-amber"), Some(Light::DarkAmber));
        assert_eq!(Light::parse("DarkAmber"), None);
        assert_eq!(Light::names(), "red, dark-amber, green");
        assert_eq!(Light::Green.to_string(), "green");
    }

    /// Each variant's name is its JSON form.
    fn names_are_json<T: serde::Serialize + Copy>(all: &[T], name: fn(T) -> &'static str) {
        for v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), name(*v));
        }
    }

    #[test]
    fn the_names_of_the_serialized_enums_are_their_json_forms() {
        use crate::{auth, model, reconcile, rollout, schedule};
        names_are_json(&auth::Role::ALL, auth::Role::as_str);
        names_are_json(&model::AgentState::ALL, model::AgentState::as_str);
        names_are_json(&model::JobStatus::ALL, model::JobStatus::as_str);
        names_are_json(&model::JobKind::ALL, model::JobKind::as_str);
        names_are_json(&rollout::TargetState::ALL, rollout::TargetState::as_str);
        names_are_json(&rollout::RolloutStatus::ALL, rollout::RolloutStatus::as_str);
        names_are_json(&schedule::Overlap::ALL, schedule::Overlap::as_str);
        names_are_json(&reconcile::TargetState::ALL, reconcile::TargetState::as_str);
        names_are_json(&reconcile::StepKind::ALL, reconcile::StepKind::as_str);
        #[cfg(feature = "chaos")]
        {
            names_are_json(&crate::chaos::Scenario::ALL, crate::chaos::Scenario::as_str);
            names_are_json(
                &crate::chaos::Invariant::ALL,
                crate::chaos::Invariant::as_str,
            );
        }
    }
}
