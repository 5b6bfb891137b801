"""Every word the kiosk shows or speaks, in Simplified Chinese and English.

Short sentences, large type: residents read these at two metres, in a queue, some with poor
eyesight. docs/resident-text-review.md lists them for review. A key missing in one language
is an error found by the tests, not a blank on screen.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")

STRINGS: dict[str, dict[Language, str]] = {
    # idle
    "idle.title": {"zh": "请出示健康码", "en": "Show your health code"},
    "idle.hint": {"zh": "把二维码对准框内", "en": "Hold the QR code inside the box"},
    "idle.no_code": {"zh": "没有健康码？请找工作人员", "en": "No code? Ask the staff"},
    "lang.switch": {"zh": "English", "en": "中文"},
    # temperature
    "measure.title": {"zh": "测量体温", "en": "Temperature check"},
    "measure.closer": {"zh": "请靠近测温器", "en": "Please move closer to the sensor"},
    "measure.again": {"zh": "请再测一次", "en": "One more measurement, please"},
    "measure.again_why": {
        "zh": "体温偏高，再测一次确认",
        "en": "The reading was high. We check it again.",
    },
    "measure.retry": {"zh": "没有测到，请再靠近一点", "en": "No reading. Come a little closer"},
    # results
    "result.go": {"zh": "请去采样", "en": "Please go to sampling"},
    "lane.main": {"zh": "普通通道", "en": "Main lane"},
    "lane.green": {"zh": "绿色通道（优先）", "en": "Green lane (priority)"},
    "lane.single": {"zh": "单采台", "en": "Single-sample desk"},
    "lane.isolation": {"zh": "临时隔离区", "en": "Isolation area"},
    "lane.staff": {"zh": "工作人员服务台", "en": "Staff desk"},
    "result.position": {"zh": "管内第 {k}/{n} 位", "en": "Tube place {k}/{n}"},
    "result.temperature": {"zh": "体温 {t:.1f}℃", "en": "Temperature {t:.1f}℃"},
    "result.single": {"zh": "请到单采台单独采样", "en": "Go to the single-sample desk"},
    "result.recall": {
        "zh": "您需要单独复采，请到单采台",
        "en": "You need a new sample on your own. Go to the single-sample desk",
    },
    "wait.title": {"zh": "请稍等", "en": "Please wait"},
    "wait.full": {
        "zh": "采样管已满，正在换新管",
        "en": "The tube is full. A new tube is coming.",
    },
    "wait.no_tube": {
        "zh": "正在准备采样管",
        "en": "The sampler is getting a tube ready.",
    },
    "wait.next": {"zh": "请在黄线后等候叫号", "en": "Wait behind the yellow line"},
    "isolation.title": {"zh": "请到临时隔离区", "en": "Go to the isolation area"},
    "isolation.fever": {"zh": "体温偏高", "en": "Your temperature is high"},
    "isolation.red": {"zh": "健康码为红码", "en": "Your health code is red"},
    "isolation.recall": {"zh": "您的检测结果需要隔离", "en": "Your test result needs isolation"},
    "isolation.next": {
        "zh": "工作人员会来帮助您。请跟随红灯。",
        "en": "Staff will come to help you. Follow the red light.",
    },
    "staff.title": {"zh": "请到工作人员服务台", "en": "Please go to the staff desk"},
    "staff.next": {"zh": "工作人员会帮您处理", "en": "The staff will help you there"},
    "reason.already_sampled": {
        "zh": "您在12小时内已采过样",
        "en": "You were sampled in the last hours",
    },
    "reason.implausible_temperature": {
        "zh": "无法测到体温",
        "en": "The temperature could not be measured",
    },
    "reason.manual_refer": {"zh": "工作人员安排", "en": "Sent by the staff"},
    "reason.clock_untrusted": {
        "zh": "请找工作人员，他们会为您登记",
        "en": "Please see the staff: they will check you in",
    },
    # faults
    "fault.title": {"zh": "暂停服务", "en": "Out of service"},
    "fault.camera": {"zh": "摄像头故障，请找工作人员", "en": "Camera fault. Ask the staff"},
    "fault.thermometer": {
        "zh": "测温器故障，工作人员将为您测温",
        "en": "Thermometer fault. Staff will take your temperature",
    },
    "fault.storage": {
        "zh": "存储已满，无法登记，请找工作人员",
        "en": "Storage is full. Nothing can be recorded. Ask the staff",
    },
    "fault.internal": {"zh": "系统出错，请找工作人员", "en": "System error. Ask the staff"},
    "fault.offline": {"zh": "网络离线，数据已保存", "en": "Offline. Records are kept safe"},
    # staff panel
    "panel.title": {"zh": "采样员面板", "en": "Sampler panel"},
    "panel.unlock": {"zh": "输入工号密码或刷工牌", "en": "Enter PIN or scan badge"},
    "panel.wrong_pin": {"zh": "密码错误", "en": "Wrong PIN"},
    "panel.lock": {"zh": "锁定", "en": "Lock"},
    "panel.open_tube": {"zh": "当前采样管", "en": "Open tube"},
    "panel.no_tube": {"zh": "没有打开的采样管，请扫描新管", "en": "No tube open. Scan a new tube"},
    "panel.seal": {"zh": "封管", "en": "Seal"},
    "panel.void": {"zh": "作废", "en": "Void"},
    "panel.remove": {"zh": "移出", "en": "Remove"},
    "panel.dispatch": {"zh": "装箱送检", "en": "Pack and dispatch"},
    "panel.counters": {"zh": "今日统计", "en": "Today"},
    "panel.link": {"zh": "网关连接", "en": "Gateway link"},
    "panel.backlog": {"zh": "待发送 {n} 条", "en": "{n} events to send"},
    "panel.alerts": {"zh": "警报", "en": "Alerts"},
    "panel.manual_id": {"zh": "无码登记", "en": "No-code check-in"},
    "panel.manual_temp": {"zh": "手动体温", "en": "Enter temperature"},
    "panel.single": {"zh": "下一支为单采管", "en": "Next tube: single"},
    "color.green": {"zh": "绿码", "en": "Green code"},
    "color.yellow": {"zh": "黄码", "en": "Yellow code"},
    "color.red": {"zh": "红码", "en": "Red code"},
    "entry.number": {"zh": "请输入数字", "en": "Please enter a number"},
    "panel.clear_fault": {"zh": "清除故障", "en": "Clear fault"},
    "recall.pool_positive": {
        "zh": "召回：所在混采管阳性，请单管复采",
        "en": "Recalled: their pooled tube was positive. Sample them alone",
    },
    "recall.pool_invalid": {
        "zh": "召回：所在混采管无效，请单管复采",
        "en": "Recalled: their pooled tube was invalid. Sample them alone",
    },
    "recall.single_positive": {
        "zh": "召回：本人单采管阳性，送隔离区",
        "en": "Recalled: their own tube was positive. To isolation",
    },
    "recall.single_invalid": {
        "zh": "召回：本人单采管无效，请单管复采",
        "en": "Recalled: their own tube was invalid. Sample them alone",
    },
    "alert.fever": {"zh": "发热", "en": "fever"},
    "alert.red_code": {"zh": "红码", "en": "red code"},
    "alert.sensor_fault.thermometer": {"zh": "测温器故障", "en": "thermometer fault"},
    "alert.sensor_fault.camera": {"zh": "摄像头故障", "en": "camera fault"},
    "alert.storage_low": {"zh": "存储空间不足", "en": "storage low"},
    "alert.database_damaged": {"zh": "数据库损坏", "en": "database damaged"},
    "alert.clock_untrusted": {"zh": "时钟不可信", "en": "clock not trusted"},
    "alert.connect": {"zh": "网关拒绝连接", "en": "gateway refused the link"},
    "alert.delivery": {"zh": "网关拒收事件", "en": "gateway refused an event"},
    "alert.ack": {"zh": "网关确认有误", "en": "gateway ack out of range"},
    "panel.close": {"zh": "返回", "en": "Back"},
    "panel.online": {"zh": "在线", "en": "online"},
    "panel.offline": {"zh": "离线", "en": "offline"},
    "panel.waiting": {"zh": "排队 {n} 人", "en": "{n} waiting"},
    "panel.void_reason": {"zh": "作废原因", "en": "Reason to void"},
    "void.spilled": {"zh": "样本洒漏", "en": "Sample spilled"},
    "void.mislabelled": {"zh": "标签错误", "en": "Wrong label"},
    "void.contaminated": {"zh": "可能污染", "en": "Possibly contaminated"},
    "id.title": {"zh": "输入身份证号码", "en": "Enter the ID number"},
    "id.ok": {"zh": "确定", "en": "OK"},
    "id.clear": {"zh": "清除", "en": "Clear"},
    "counter.checkins": {"zh": "登记", "en": "Check-ins"},
    "counter.pooled": {"zh": "混采", "en": "Pooled"},
    "counter.single": {"zh": "单采", "en": "Single"},
    "counter.isolated": {"zh": "隔离", "en": "Isolated"},
    "counter.referred": {"zh": "转人工", "en": "Referred"},
    "counter.sealed": {"zh": "已封管", "en": "Sealed tubes"},
}


def t(key: str, lang: Language, **values: object) -> str:
    """The text of ``key`` in ``lang``, with ``values`` filled in."""
    text = STRINGS[key][lang]
    return text.format(**values) if values else text


def missing() -> list[str]:
    """Keys not translated into every language (the tests keep this empty)."""
    return [k for k, v in STRINGS.items() if any(not v.get(lang) for lang in LANGUAGES)]


def all_text() -> str:
    """Every character any screen may show (the font check draws all of them)."""
    return "".join(v[lang] for v in STRINGS.values() for lang in LANGUAGES)
