// Timeline of a join, as performance marks named "join:<step>" (read by bench/web; harmless elsewhere).
// Only the first mark of each name counts: later ones (a second call in the same page) are ignored.

const seen = new Set();

export function mark(step) {
  if (seen.has(step)) return;
  seen.add(step);
  try {
    performance.mark(`join:${step}`);
  } catch {
    /* no User Timing: nothing to record */
  }
}
