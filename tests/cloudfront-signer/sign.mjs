// Signs the cases on stdin (a JSON array) with @aws-sdk/cloudfront-signer, SHA-256, and prints
// the results as a JSON array in the same order; tests/cloudfront_reference.rs compares them
// with presignd's. A case: {kind: "url" | "cookies", url, keyPairId, keyFile, expires,
// notBefore?, ip?, policy?} (times in epoch seconds; `policy` is for cookies with only an
// expiry, where the signer would otherwise fall back to a canned policy).
import { readFileSync } from "node:fs";
import { getSignedCookies, getSignedUrl } from "@aws-sdk/cloudfront-signer";

const cases = JSON.parse(readFileSync(0, "utf8"));
const results = cases.map((c) => {
  const args = {
    keyPairId: c.keyPairId,
    privateKey: readFileSync(c.keyFile, "utf8"),
    dateLessThan: new Date(c.expires * 1000),
    algorithm: "SHA256",
  };
  if (c.notBefore !== undefined && c.notBefore !== null) {
    args.dateGreaterThan = new Date(c.notBefore * 1000);
  }
  if (c.ip) args.ipAddress = c.ip;
  if (c.policy) args.policy = c.policy;
  else args.url = c.url;
  if (c.kind === "url") return { url: getSignedUrl(args) };
  // The statement the signer builds for an expiry alone, for the test to compare.
  const statement = JSON.stringify({
    Statement: [{ Resource: c.url, Condition: { DateLessThan: { "AWS:EpochTime": c.expires } } }],
  });
  return { cookies: getSignedCookies(args), statement };
});
process.stdout.write(JSON.stringify(results));
