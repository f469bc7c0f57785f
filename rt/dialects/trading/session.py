"""One trading connection's protocol state: client text in, actions out (sans-IO).

The client authenticates in-band: ``auth`` with its user id and a token from
``POST /api/ws/token``, within ``auth_timeout_s`` of connecting (else the connection closes
with 4401 AUTH_TIMEOUT). Before that only ``auth`` and ``ping`` are answered; anything else is
an ``error`` 401. Once signed in, the connection receives the user's private pushes, and may
subscribe to market data and trade. A message of the wrong shape (not JSON, no ``type``, a
field missing or of the wrong type) is an ``error`` 400 naming what is wrong; an order that
is well formed but cannot be placed is an ``order_response`` with ``success: false``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rt.auth import AuthError, Claims
from rt.dialects.base import (
    FROM_LAST_DELIVERED,
    Action,
    Join,
    Leave,
    ProtocolError,
    Send,
    SetDeadline,
    SignIn,
    Tell,
    parse_message,
)
from rt.dialects.trading.codec import encode_error
from rt.dialects.trading.exchange import (
    LEDGER_PATH,
    MARKET_MAKER,
    UNAVAILABLE_REFUSAL,
    CancelOrder,
    Once,
    OpenAccount,
    Place,
    Query,
    query_error,
)
from rt.dialects.trading.instruments import Instrument
from rt.dialects.trading.ledger import (
    BAD_MESSAGE,
    DIRECTIONS,
    NOT_AUTHENTICATED,
    OFFSETS,
    OrderRequest,
    order_response,
)
from rt.jsontext import dumps, show
from rt.model import Json
from rt.topics import TRADING_CHANNELS, channel_topic, user_topic

#: Close code and reason when no ``auth`` came in time (as for an expired token).
CLOSE_AUTH_TIMEOUT = 4401
#: Channels a client may name that are private: every signed-in connection has them anyway.
PRIVATE_CHANNELS = ("account_update", "order_status")
MESSAGE_TYPES = (
    "auth",
    "ping",
    "subscribe",
    "unsubscribe",
    "submit_order",
    "cancel_order",
    "query_order",
    "query_account",
    "query_position",
)
#: The longest ``client_order_id`` kept.
MAX_CLIENT_ORDER_ID = 64

_BAD = str(BAD_MESSAGE)


def _error(code: int, message: str) -> Send:
    return Send(encode_error(code, message), error=True)


def _order_unavailable() -> str:
    return dumps(order_response(None, UNAVAILABLE_REFUSAL))


def _once(reply: Callable[[str], None]) -> Once:
    """The exchange's answer, as text on the connection, at most once."""
    return Once(lambda answer: reply(dumps(answer)))


class TradingSession:
    """One connection: who it is signed in as, and the market data it subscribed to."""

    def __init__(
        self,
        *,
        query_user_id: str | None,
        verify: Callable[[str], Claims],
        instruments: Mapping[str, Instrument],
        max_subscriptions: int,
        auth_timeout_s: float,
    ) -> None:
        self.query_user_id = query_user_id
        self._verify = verify
        self.instruments = instruments
        self.max_subscriptions = max_subscriptions
        self.auth_timeout_s = auth_timeout_s
        self.user_id: str | None = None
        self.subscribed: dict[str, None] = {}  # topics, in the order subscribed

    def opened(self) -> list[Action]:
        return [SetDeadline(self.auth_timeout_s, CLOSE_AUTH_TIMEOUT, "AUTH_TIMEOUT")]

    def subscriptions(self) -> int:
        return len(self.subscribed)

    def forget(self, topic: str) -> None:
        self.subscribed.pop(topic, None)

    def handle_binary(self) -> list[Action]:
        return [_error(BAD_MESSAGE, "binary frames are not supported; send JSON text")]

    def ticket_answer(self, answer: Json) -> str:
        raise TypeError("the trading dialect takes orders, not tickets")  # it never Submits

    def handle_text(self, text: str) -> list[Action]:
        try:
            message = parse_message(text, bad_json=_BAD, bad_message=_BAD)
            kind = message["type"]
            if kind == "ping":
                return [Send('{"type":"pong"}')]
            if kind == "auth":
                return self._auth(message)
            if self.user_id is None:
                return [_error(NOT_AUTHENTICATED, "Not authenticated")]
            if kind == "subscribe":
                return self._subscribe(message)
            if kind == "unsubscribe":
                return self._unsubscribe(message)
            if kind == "submit_order":
                return [self._place(message)]
            if kind == "cancel_order":
                return [self._cancel(message)]
            if kind in ("query_order", "query_account", "query_position"):
                return [self._query(kind, message)]
            raise ProtocolError(
                _BAD,
                f"unknown message type {show(kind)}; expected one of {', '.join(MESSAGE_TYPES)}",
            )
        except ProtocolError as exc:
            return [Send(encode_error(exc.code, exc.message), error=True)]

    # -- auth ------------------------------------------------------------------------------

    def _auth(self, message: dict[str, Any]) -> list[Action]:
        claimed = message.get("user_id")
        if isinstance(claimed, int) and not isinstance(claimed, bool):
            claimed = str(claimed)
        if not isinstance(claimed, str):
            raise ProtocolError(
                _BAD,
                "missing field: user_id"
                if claimed is None
                else f"expected user_id to be a string, got {show(claimed)}",
            )
        token = _field(message, "token", str)
        last_seq = message.get("last_seq")
        if last_seq is not None and not (
            isinstance(last_seq, int) and not isinstance(last_seq, bool) and last_seq >= 0
        ):
            why = f"expected last_seq to be the last private seq handled, got {show(last_seq)}"
            raise ProtocolError(_BAD, why)
        try:
            claims = self._verify(token)
        except AuthError:
            return [self._auth_failed("Invalid credentials")]
        user = str(claims.user_id)
        if user != claimed or user == MARKET_MAKER:  # the demo's own account is nobody's
            return [self._auth_failed("Invalid credentials")]
        if self.user_id not in (None, user):
            return [self._auth_failed(f"Already authenticated as {self.user_id}")]
        if self.query_user_id not in (None, user):  # the URL named someone else
            return [self._auth_failed("Invalid credentials")]
        first = self.user_id is None

        def then(refusal: str | None) -> list[Action]:
            if refusal is not None:
                return [self._auth_failed(refusal)]
            self.user_id = user
            answer = {
                "type": "auth_response",
                "success": True,
                "user_id": user,
                "message": "Authentication successful",
            }
            actions: list[Action] = [
                Send(dumps(answer)),
                # (Without the exchange, orders and queries will say it is unavailable.)
                Tell(LEDGER_PATH, lambda _: OpenAccount(user), None),
            ]
            topic = user_topic(user)
            if last_seq is not None:  # the private stream: from where the client says
                if not first:
                    actions.append(Leave(topic))  # (a Join awaits: leave first, see UOF's resume)
                actions.append(Join(topic, since=last_seq, announce=False))
            elif first:  # or from where this user's connections got to
                actions.append(Join(topic, since=FROM_LAST_DELIVERED, announce=False))
            return actions

        return [SignIn(user, claims.expires_at_ms, then)]

    @staticmethod
    def _auth_failed(why: str) -> Send:
        answer = {"type": "auth_response", "success": False, "user_id": "", "message": why}
        return Send(dumps(answer), error=True)

    # -- market data -----------------------------------------------------------------------

    def _channels_and_instruments(self, message: dict[str, Any]) -> tuple[list[str], list[str]]:
        return _names(message, "channels"), _names(message, "instruments")

    def _subscribe(self, message: dict[str, Any]) -> list[Action]:
        channels, instruments = self._channels_and_instruments(message)
        problem = self._unknown(channels, instruments)
        if problem is None:
            fresh = [
                channel_topic(c, i)
                for c in channels
                if c in TRADING_CHANNELS
                for i in instruments
                if channel_topic(c, i) not in self.subscribed
            ]
            if len(self.subscribed) + len(fresh) > self.max_subscriptions:
                problem = (
                    f"at most {self.max_subscriptions} channel x instrument subscriptions per "
                    f"connection; {len(self.subscribed)} held, {len(fresh)} more asked"
                )
        if problem is not None:
            return [Send(_subscribe_response(False, channels, instruments, problem), error=True)]
        actions: list[Action] = [
            Send(_subscribe_response(True, channels, instruments, "Subscribed successfully"))
        ]
        for topic in fresh:
            self.subscribed[topic] = None
            # The book starts from a full snapshot; prints and tickers from the next one.
            actions.append(Join(topic, quiet=not topic.startswith("orderbook:")))
        return actions

    def _unsubscribe(self, message: dict[str, Any]) -> list[Action]:
        channels, instruments = self._channels_and_instruments(message)
        problem = self._unknown(channels, instruments)
        if problem is not None:
            return [
                Send(
                    _subscribe_response(
                        False, channels, instruments, problem, "unsubscribe_response"
                    ),
                    error=True,
                )
            ]
        actions: list[Action] = []
        for c in channels:
            for i in instruments:
                topic = channel_topic(c, i)
                if topic in self.subscribed:
                    del self.subscribed[topic]
                    actions.append(Leave(topic))
        actions.append(
            Send(
                _subscribe_response(
                    True, channels, instruments, "Unsubscribed successfully", "unsubscribe_response"
                )
            )
        )
        return actions

    def _unknown(self, channels: list[str], instruments: list[str]) -> str | None:
        valid = (*TRADING_CHANNELS, *PRIVATE_CHANNELS)
        bad_channels = [c for c in channels if c not in valid]
        if bad_channels:
            return (
                f"unknown channel {', '.join(map(repr, bad_channels))}; valid channels: "
                f"{', '.join(TRADING_CHANNELS)} (and {', '.join(PRIVATE_CHANNELS)}, which every "
                "authenticated connection receives)"
            )
        bad_instruments = [i for i in instruments if i not in self.instruments]
        if bad_instruments:
            return (
                f"unknown instrument {', '.join(map(repr, bad_instruments))}; valid instruments: "
                f"{', '.join(self.instruments)}"
            )
        return None

    # -- orders and queries ----------------------------------------------------------------

    def _place(self, message: dict[str, Any]) -> Tell:
        order_type = _field(message, "order_type", str)
        price = message.get("price")
        if price is None and order_type == "LIMIT":
            raise ProtocolError(_BAD, "missing field: price (a LIMIT order needs one)")
        if price is not None and not _is_number(price):
            raise ProtocolError(_BAD, f"expected price to be a number, got {show(price)}")
        volume = message.get("volume")
        if volume is None:
            raise ProtocolError(_BAD, "missing field: volume")
        if not _is_number(volume):
            raise ProtocolError(_BAD, f"expected volume to be a number, got {show(volume)}")
        client_order_id = message.get("client_order_id")
        if client_order_id is not None and not (
            isinstance(client_order_id, str) and 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID
        ):
            raise ProtocolError(
                _BAD,
                f"expected client_order_id to be a string of 1-{MAX_CLIENT_ORDER_ID} "
                f"characters, got {show(client_order_id)}",
            )
        request = OrderRequest(
            instrument_id=_field(message, "instrument_id", str),
            direction=_choice(message, "direction", DIRECTIONS),
            offset=_choice(message, "offset", OFFSETS),
            volume=volume,
            price=price,
            order_type=order_type,
            client_order_id=client_order_id,
        )
        user = self._user()
        return Tell(
            LEDGER_PATH,
            lambda reply: Place(user, request, _once(reply)),
            _order_unavailable(),
        )

    def _cancel(self, message: dict[str, Any]) -> Tell:
        order_id = _field(message, "order_id", str)
        user = self._user()
        return Tell(
            LEDGER_PATH,
            lambda reply: CancelOrder(user, order_id, _once(reply)),
            _order_unavailable(),
        )

    def _query(self, kind: str, message: dict[str, Any]) -> Tell:
        arg: str | None = None
        if kind == "query_order":
            arg = _field(message, "order_id", str)
        elif kind == "query_position" and message.get("instrument_id") is not None:
            arg = _field(message, "instrument_id", str)
        user = self._user()
        return Tell(
            LEDGER_PATH,
            lambda reply: Query(user, kind, arg, _once(reply)),
            dumps(query_error(kind, UNAVAILABLE_REFUSAL)),
        )

    def _user(self) -> str:
        assert self.user_id is not None
        return self.user_id


def _subscribe_response(
    success: bool,
    channels: list[str],
    instruments: list[str],
    message: str,
    kind: str = "subscribe_response",
) -> str:
    answer: dict[str, Json] = {
        "type": kind,
        "success": success,
        "channels": channels,
        "instruments": instruments,
        "message": message,
    }
    if not success:
        answer["code"] = BAD_MESSAGE
    return dumps(answer)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field(message: dict[str, Any], name: str, kind: type) -> Any:
    if name not in message or message[name] is None:
        raise ProtocolError(_BAD, f"missing field: {name}")
    value = message[name]
    if not isinstance(value, kind):
        what = "a string" if kind is str else f"a {kind.__name__}"
        raise ProtocolError(_BAD, f"expected {name} to be {what}, got {show(value)}")
    return value


def _choice(message: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = _field(message, name, str)
    if value not in choices:
        raise ProtocolError(
            _BAD, f"expected {name} to be {' or '.join(choices)}, got {show(value)}"
        )
    return str(value)


def _names(message: dict[str, Any], name: str) -> list[str]:
    value = _field(message, name, list)
    if not value or not all(isinstance(v, str) for v in value):
        raise ProtocolError(
            _BAD, f"expected {name} to be a non-empty list of strings, got {show(value)}"
        )
    return list(dict.fromkeys(value))
