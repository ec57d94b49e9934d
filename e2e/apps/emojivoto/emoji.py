"""emojivoto `emoji` service (gRPC): ListAll and FindByShortcode over a fixed list.

Run: `python -m meshlet.e2e.apps.emojivoto.emoji` (GRPC_PORT, default 8080).
"""
from __future__ import annotations

from meshlet.e2e.apps.emojivoto.pb import emojivoto_pb as pb

# A subset of the original's list; :doughnut: is the one voting refuses.
EMOJI: tuple[tuple[str, str], ...] = (
    (":joy:", "\U0001F602"), (":sunglasses:", "\U0001F60E"), (":doughnut:", "\U0001F369"),
    (":stuck_out_tongue_winking_eye:", "\U0001F61C"), (":money_mouth_face:", "\U0001F911"),
    (":flushed:", "\U0001F633"), (":mask:", "\U0001F637"), (":nerd_face:", "\U0001F913"),
    (":ghost:", "\U0001F47B"), (":skull_and_crossbones:", "\u2620\ufe0f"), (":heart_eyes_cat:", "\U0001F63B"),
    (":hear_no_evil:", "\U0001F649"), (":see_no_evil:", "\U0001F648"), (":speak_no_evil:", "\U0001F64A"),
    (":boy:", "\U0001F466"), (":girl:", "\U0001F467"), (":man:", "\U0001F468"), (":woman:", "\U0001F469"),
    (":older_man:", "\U0001F474"), (":policeman:", "\U0001F46E"), (":guardsman:", "\U0001F482"),
    (":construction_worker_man:", "\U0001F477"), (":prince:", "\U0001F934"), (":princess:", "\U0001F478"),
    (":man_in_tuxedo:", "\U0001F935"), (":bride_with_veil:", "\U0001F470"), (":mrs_claus:", "\U0001F936"),
    (":santa:", "\U0001F385"), (":turkey:", "\U0001F983"), (":rabbit:", "\U0001F407"),
    (":no_good_woman:", "\U0001F645"), (":ok_woman:", "\U0001F646"), (":raising_hand_woman:", "\U0001F64B"),
    (":bowing_man:", "\U0001F647"), (":man_facepalming:", "\U0001F926"), (":woman_shrugging:", "\U0001F937"),
    (":massage_woman:", "\U0001F486"), (":walking_man:", "\U0001F6B6"), (":running_man:", "\U0001F3C3"),
    (":dancer:", "\U0001F483"), (":man_dancing:", "\U0001F57A"), (":dancing_women:", "\U0001F46F"),
    (":rainbow:", "\U0001F308"), (":skier:", "\u26f7"), (":golfing_man:", "\U0001F3CC"),
    (":surfing_man:", "\U0001F3C4"), (":basketball_man:", "\u26f9"), (":biking_man:", "\U0001F6B4"),
    (":point_up:", "\u261d"), (":vulcan_salute:", "\U0001F596"), (":metal:", "\U0001F918"),
    (":call_me_hand:", "\U0001F919"), (":thumbsup:", "\U0001F44D"), (":wave:", "\U0001F44B"),
    (":clap:", "\U0001F44F"), (":raised_hands:", "\U0001F64C"), (":pray:", "\U0001F64F"),
    (":dog:", "\U0001F436"), (":cat2:", "\U0001F408"), (":pig:", "\U0001F437"), (":hatching_chick:", "\U0001F423"),
    (":snail:", "\U0001F40C"), (":bacon:", "\U0001F953"), (":pizza:", "\U0001F355"), (":taco:", "\U0001F32E"),
    (":burrito:", "\U0001F32F"), (":ramen:", "\U0001F35C"), (":champagne:", "\U0001F37E"),
    (":tropical_drink:", "\U0001F379"), (":beer:", "\U0001F37A"), (":tumbler_glass:", "\U0001F943"),
    (":world_map:", "\U0001F5FA"), (":beach_umbrella:", "\u26f1"), (":mountain_snow:", "\U0001F3D4"),
    (":camping:", "\U0001F3D5"), (":steam_locomotive:", "\U0001F682"), (":flight_departure:", "\U0001F6EB"),
    (":rocket:", "\U0001F680"), (":star2:", "\U0001F31F"), (":sun_behind_small_cloud:", "\U0001F324"),
    (":cloud_with_rain:", "\U0001F327"), (":fire:", "\U0001F525"), (":jack_o_lantern:", "\U0001F383"),
    (":balloon:", "\U0001F388"), (":tada:", "\U0001F389"), (":trophy:", "\U0001F3C6"),
    (":iphone:", "\U0001F4F1"), (":pager:", "\U0001F4DF"), (":fax:", "\U0001F4E0"), (":bulb:", "\U0001F4A1"),
    (":money_with_wings:", "\U0001F4B8"), (":crystal_ball:", "\U0001F52E"), (":underage:", "\U0001F51E"),
    (":interrobang:", "\u2049\ufe0f"), (":100:", "\U0001F4AF"), (":checkered_flag:", "\U0001F3C1"),
    (":crossed_swords:", "\u2694\ufe0f"), (":floppy_disk:", "\U0001F4BE"), (":poop:", "\U0001F4A9"),
)


class EmojiService(pb.EmojiServiceBase):
    def __init__(self, emoji: tuple[tuple[str, str], ...] = EMOJI) -> None:
        self._list = [pb.Emoji(shortcode=code, unicode=text) for code, text in emoji]
        self._by_code = {e.shortcode: e for e in self._list}

    async def list_all(self, message: pb.ListAllEmojiRequest) -> pb.ListAllEmojiResponse:
        return pb.ListAllEmojiResponse(list=list(self._list))

    async def find_by_shortcode(self, message: pb.FindByShortcodeRequest) -> pb.FindByShortcodeResponse:
        found = self._by_code.get(message.shortcode)
        return pb.FindByShortcodeResponse(emoji=found) if found else pb.FindByShortcodeResponse()


def main() -> None:
    from meshlet.e2e.apps.emojivoto.grpcserve import serve

    serve("emoji", EmojiService())


if __name__ == "__main__":
    main()
