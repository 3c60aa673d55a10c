//! What an event the procedure engine publishes or takes in means for the run of a dossier or
//! of one of its steps, read from the group's definition: a step's command starts the step's
//! run, its `done_on` event completes it, its refusal event fails it; the intake starts the
//! dossier's run and the result completes it.

use serde::Serialize;

use crate::procedures::Definition;
use crate::procedures::definition::{Refusal, StepDef};

/// OpenLineage's run states the hub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunState {
    Start,
    Complete,
    Fail,
}

/// Whose run an event of the engine's belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// The whole dossier's: its start (the intake) or its end (the result).
    Dossier(RunState),
    /// A run of its own under the dossier's: a status the engine told (accepted, status
    /// changed, a step overdue), or what it joined to the dossier (a pre-fill answer, a
    /// document, a supplement). They come before and after the result alike, so they are not
    /// states of the dossier's run, which would otherwise run again once complete.
    Other,
    /// One step's, or the undoing of one (`compensation`).
    Step {
        step: &'a str,
        compensation: bool,
        state: RunState,
    },
}

/// The role of an event of `event_type` the engine published (`published`) or took in. Only
/// an event of one step alone says which step it is (each benefit decided is one of three: which
/// one is in the payload, which the ledger does not keep); the others are [`Role::Other`].
pub fn role<'a>(definition: &'a Definition, event_type: &str, published: bool) -> Role<'a> {
    let step = |step: &'a StepDef, compensation: bool, state: RunState| Role::Step {
        step: step.name,
        compensation,
        state,
    };
    let steps = || definition.steps.iter();
    let compensation = |s: &'a StepDef| s.compensation.as_ref();
    if published {
        if event_type == definition.result {
            return Role::Dossier(RunState::Complete);
        }
        if let Some(s) = only(steps().filter(|s| {
            s.command
                .as_ref()
                .is_some_and(|c| c.event_type == event_type)
        })) {
            return step(s, false, RunState::Start);
        }
        if let Some(s) = only(
            steps().filter(|s| compensation(s).is_some_and(|c| c.command.event_type == event_type)),
        ) {
            return step(s, true, RunState::Start);
        }
        return Role::Other;
    }
    if event_type == definition.intake {
        return Role::Dossier(RunState::Start);
    }
    if let Some(s) =
        only(steps().filter(
            |s| matches!(s.refused, Some(Refusal::Event { event, .. }) if event == event_type),
        ))
    {
        return step(s, false, RunState::Fail);
    }
    if let Some(s) = only(steps().filter(|s| s.done_on == event_type)) {
        return step(s, false, RunState::Complete);
    }
    if let Some(s) =
        only(steps().filter(|s| compensation(s).is_some_and(|c| c.done_on == event_type)))
    {
        return step(s, true, RunState::Complete);
    }
    Role::Other
}

/// The one item, if there is exactly one.
fn only<T>(mut items: impl Iterator<Item = T>) -> Option<T> {
    match (items.next(), items.next()) {
        (Some(item), None) => Some(item),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedures::GROUPS;

    fn group(name: &str) -> &'static Definition {
        GROUPS.iter().find(|g| g.group == name).expect("group")
    }

    #[test]
    fn a_steps_command_starts_its_run_and_its_answer_completes_it() {
        let birth = group("birth");
        let residence = birth
            .steps
            .iter()
            .find(|s| s.command.is_some())
            .expect("a step with a command");
        let command = residence.command.as_ref().expect("command").event_type;
        assert_eq!(
            role(birth, command, true),
            Role::Step {
                step: residence.name,
                compensation: false,
                state: RunState::Start
            }
        );
        assert_eq!(
            role(birth, residence.done_on, false),
            Role::Step {
                step: residence.name,
                compensation: false,
                state: RunState::Complete
            }
        );
        assert_eq!(
            role(birth, birth.intake, false),
            Role::Dossier(RunState::Start)
        );
        assert_eq!(
            role(birth, birth.result, true),
            Role::Dossier(RunState::Complete)
        );
        assert_eq!(role(birth, birth.accepted, true), Role::Other);
        assert_eq!(
            role(birth, "payment.failed", false),
            Role::Step {
                step: "PAYMENT",
                compensation: false,
                state: RunState::Fail
            }
        );
    }

    #[test]
    fn an_event_of_several_steps_is_the_dossiers_and_an_undoing_has_a_run_of_its_own() {
        let death = group("death");
        let shared = death
            .steps
            .iter()
            .find(|s| {
                death
                    .steps
                    .iter()
                    .filter(|o| o.done_on == s.done_on)
                    .count()
                    > 1
            })
            .expect("two steps end on one kind of event");
        assert_eq!(role(death, shared.done_on, false), Role::Other);
        assert_eq!(role(death, "death.benefit-refused", false), Role::Other);
        let undone = death
            .steps
            .iter()
            .find(|s| s.name == "RESIDENCE_DELETION")
            .expect("the residence deletion, which can be undone");
        let compensation = undone.compensation.as_ref().expect("compensation");
        assert_eq!(
            role(death, compensation.command.event_type, true),
            Role::Step {
                step: undone.name,
                compensation: true,
                state: RunState::Start
            }
        );
    }
}
