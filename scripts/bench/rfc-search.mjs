// The searches of the RFC 2544/2889 scenarios (scripts/bench/rfc2544.mjs), kept apart from
// any I/O so they can be checked on made-up trials (test/bench-rfc.test.ts).

/**
 * RFC 2544 §26.1: the throughput is the highest rate at which the DUT forwards every frame
 * offered. Binary search on the offered rate, driven by `trial(targetPps)`, which runs one
 * trial and resolves to { pass, offeredPps } (offeredPps: the rate the sender really
 * achieved; pass: no frame lost, and the sender kept up with the target).
 *
 * The first trial is unthrottled (`trial(null)`): the most the sender can offer on this path,
 * the stand-in for the medium's maximum rate (a virtual link has none). If it passes, the
 * throughput is that rate and the result is `senderBound` (the DUT was not the limit). Else
 * the search halves [lo, hi] (lo: a rate known to pass, from 0; hi: the unthrottled rate)
 * until hi - lo is at most `resolution` of the unthrottled rate, or `maxTrials` trials ran.
 * The answer is the best passing trial's achieved rate (0 if none passed: the DUT loses
 * frames even at the lowest rate tried, `below` says which).
 */
export async function searchZeroLoss(trial, { resolution = 0.04, maxTrials = 12 } = {}) {
  const trials = [];
  const run = async (target) => {
    const r = await trial(target);
    trials.push({ targetPps: target, ...r });
    return r;
  };
  const top = await run(null);
  if (top.pass) return { throughputPps: top.offeredPps, targetPps: null, senderBound: true, maxPps: top.offeredPps, trials };
  if (!(top.offeredPps > 0)) throw new Error("the unthrottled trial offered no frames");
  let lo = 0;
  let hi = top.offeredPps;
  let best = null;
  while (trials.length < maxTrials && hi - lo > resolution * top.offeredPps) {
    const mid = (lo + hi) / 2;
    const r = await run(mid);
    if (r.pass) {
      lo = mid;
      if (!best || r.offeredPps > best.offeredPps) best = { ...r, targetPps: mid };
    } else {
      hi = mid;
    }
  }
  return {
    throughputPps: best ? best.offeredPps : 0,
    targetPps: best ? best.targetPps : null,
    senderBound: false,
    maxPps: top.offeredPps,
    below: best ? undefined : hi,
    trials,
  };
}

/**
 * RFC 2889 §5.7: the largest address count N in [1, max] for which `trial(N)` passes (every
 * one of N addresses learned), by binary search on N, exact. The first trial is N = max: if it
 * passes the capacity is at least max (`atLeast`); else, when it says how many addresses it
 * held (`learned`), that count and the next are tried first. Assumes a count that passes
 * makes every smaller count pass (the table holds up to its size). Resolves to { capacity, atLeast,
 * trials }; capacity 0 when even one address is not learned.
 */
export async function searchCapacity(trial, max) {
  const trials = [];
  const run = async (n) => {
    const r = await trial(n);
    trials.push({ addresses: n, ...r });
    return r.pass;
  };
  if (await run(max)) return { capacity: max, atLeast: true, trials };
  let lo = 0; // passes (trivially)
  let hi = max; // fails
  // A trial past the capacity tells how many it held (`learned`): try that count and the
  // next first, which settles a table that holds exactly what it says in two trials.
  const held = trials[0].learned;
  if (Number.isInteger(held) && held > 0 && held < max) {
    if (await run(held)) {
      lo = held;
      if (!(await run(held + 1))) hi = held + 1;
    } else {
      hi = held;
    }
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await run(mid)) lo = mid;
    else hi = mid;
  }
  return { capacity: lo, atLeast: false, trials };
}

/**
 * RFC 2544 §26.3: offered rates of the frame-loss series, as fractions of the maximum
 * rate: 100%, 90%, … in steps of `step` (10% at most, as the RFC requires), until two
 * successive trials lose nothing. `lossAt(fraction)` resolves to the loss percentage.
 */
export async function lossSeries(lossAt, step = 0.1) {
  const out = [];
  let clean = 0;
  for (let k = 0; k * step < 1 - 1e-9 && clean < 2; k++) {
    const fraction = Number((1 - k * step).toFixed(6));
    const r = await lossAt(fraction);
    out.push({ fraction, ...r });
    clean = r.lossPercent === 0 ? clean + 1 : 0;
  }
  return out;
}
