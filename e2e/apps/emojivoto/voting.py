"""emojivoto `voting` service (gRPC): Vote and Results, in memory.

Run: `python -m meshlet.e2e.apps.emojivoto.voting` (GRPC_PORT, default 8080).
Voting for `:doughnut:` always fails with status UNKNOWN ("ERROR"), as the
original's VoteDoughnut does; an unknown or empty shortcode is INVALID_ARGUMENT.
"""
from __future__ import annotations

from collections import Counter

from grpclib import GRPCError, Status
from meshlet.e2e.apps.emojivoto.pb import emojivoto_pb as pb

FAILING_SHORTCODE = ":doughnut:"
MAX_SHORTCODE = 64


class VotingService(pb.VotingServiceBase):
    def __init__(self, known: frozenset[str] | None = None) -> None:
        from meshlet.e2e.apps.emojivoto.emoji import EMOJI

        self.known = known if known is not None else frozenset(code for code, _ in EMOJI)
        self.votes: Counter[str] = Counter()

    async def vote(self, message: pb.VoteRequest) -> pb.VoteResponse:
        code = message.shortcode
        if not code or len(code) > MAX_SHORTCODE or code not in self.known:
            raise GRPCError(Status.INVALID_ARGUMENT, f"unknown emoji shortcode {code[:MAX_SHORTCODE]!r}")
        if code == FAILING_SHORTCODE:
            raise GRPCError(Status.UNKNOWN, "ERROR")
        self.votes[code] += 1
        return pb.VoteResponse()

    async def results(self, message: pb.ResultsRequest) -> pb.ResultsResponse:
        ranked = sorted(self.votes.items(), key=lambda kv: (-kv[1], kv[0]))
        return pb.ResultsResponse(results=[pb.VotingResult(shortcode=c, votes=n) for c, n in ranked])


def main() -> None:
    from meshlet.e2e.apps.emojivoto.grpcserve import serve

    serve("voting", VotingService())


if __name__ == "__main__":
    main()
