//! `ballot interactive`: a menu loop to vote and see the results, until `quit`.

use super::results::results;
use super::vote::vote;
use super::{read_tally, unreachable_outcome, CliArgs};
use ballot_runtime::client::ClientHandle;
use std::io::{BufRead, Write};

/// The menu loop of `ballot interactive`, over any input and output (tests drive it
/// through pipes).
pub(super) async fn interactive(
    client: &ClientHandle,
    args: &CliArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<u8> {
    let names = match read_tally(client, args).await {
        Ok((_, t)) => t.into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        Err(e) => {
            writeln!(out, "{}", unreachable_outcome(e, "candidates").text)?;
            return Ok(4);
        }
    };
    let mut line = String::new();
    loop {
        writeln!(out, "\ncandidates:")?;
        for (i, c) in names.iter().enumerate() {
            writeln!(out, "  {}) {c}", i + 1)?;
        }
        write!(out, "voter id (or 'results', 'quit'): ")?;
        out.flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(0);
        }
        let voter = line.trim().to_string();
        match voter.as_str() {
            "" => continue,
            "quit" | "exit" => return Ok(0),
            "results" => {
                writeln!(out, "{}", results(client, args).await.text)?;
                continue;
            }
            _ => {}
        }
        write!(out, "candidate number (1-{}): ", names.len())?;
        out.flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(0);
        }
        let Some(candidate) = line.trim().parse::<usize>().ok().and_then(|i| names.get(i.wrapping_sub(1))) else {
            writeln!(out, "'{}' is not a number from 1 to {}", line.trim(), names.len())?;
            continue;
        };
        writeln!(out, "{}", vote(client, args, &voter, candidate, None).await.text)?;
        writeln!(out, "{}", results(client, args).await.text)?;
    }
}
