// The STUN and TURN servers a running `tunnelbore run` uses (the introduction server's, or its own
// --stun/--turn), as its control socket answers them to `tunnelbore netcheck`. The answer comes from the
// unprivileged worker, which parses network input: netcheck validates it before using it.
import { z } from "zod";

export interface IceServersAnswer {
  stunUrls: string[];
  /** TURN URLs and the credentials in use (the introduction server's short-lived ones), or null. */
  turn: { urls: string[]; username: string; credential: string } | null;
}

export const iceServersAnswerSchema = z.strictObject({
  stunUrls: z.array(z.string().max(512)).max(16),
  turn: z
    .strictObject({
      urls: z.array(z.string().max(512)).max(16),
      username: z.string().max(512),
      credential: z.string().max(512),
    })
    .nullable(),
});
