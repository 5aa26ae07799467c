"""Common Chinese surnames (姓氏), in Han characters and in pinyin, for the name detector.

The single surnames are the 343 most common ones, roughly in order of how many
people bear them (national household registration counts); together they cover
well over 95 % of the population: rarer ones are left out because every one more
is one more word (高中, 农民) that starts like a name. Compound surnames (复姓) are
few but distinctive (欧阳, 司马, 诸葛, …), so all the usual ones are listed.
"""

from __future__ import annotations

SINGLE_SURNAMES: frozenset[str] = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程洪赖萧"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾"
    "毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰"
    "焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲"
    "房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟"
    "应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀"
    "郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴"
    "丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊"
)

COMPOUND_SURNAMES: frozenset[str] = frozenset(
    {
        "欧阳",
        "司马",
        "上官",
        "诸葛",
        "东方",
        "皇甫",
        "尉迟",
        "公孙",
        "慕容",
        "长孙",
        "宇文",
        "司徒",
        "夏侯",
        "轩辕",
        "令狐",
        "钟离",
        "独孤",
        "南宫",
        "西门",
        "百里",
        "呼延",
        "端木",
        "万俟",
        "闻人",
        "澹台",
        "公冶",
        "太史",
        "申屠",
        "赫连",
        "拓跋",
        "濮阳",
        "东郭",
        "左丘",
        "梁丘",
        "司空",
        "公羊",
        "乐正",
        "仲孙",
        "第五",
    }
)

# Pinyin of the common surnames, for names written in Latin letters ("Zhang Wei", "ZHANG Wei").
PINYIN_SURNAMES: frozenset[str] = frozenset(
    """
    wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he gao lin luo zheng
    liang xie song tang han feng deng cao peng zeng xiao tian dong yuan pan yu jiang cai du ye
    cheng su wei lv lu ding ren shen yao cui zhong tan fan jin shi liao jia xia fu fang bai zou
    meng xiong qin qiu yin xue yan duan lei hou long tao gu mao hao gong shao wan qian dai mo
    kong xiang chang wen kang niu ge xing an qi yi qiao pang ni zhuang nie yue zhai zhan geng
    guan lan jiao zuo gan bao ning shang shu ruan ke ji mei tong ling bi shan pei huo tu miao
    sheng qu weng ran lu you xin chai hua pu teng rao mu ai che lian mai lou dou qi cen jing
    dang bu leng xi zong gui quan ying zang min gou bian pi rong sang lang zhen cong
    ouyang sima shangguan zhuge dongfang huangfu yuchi gongsun murong zhangsun yuwen situ
    xiahou xuanyuan linghu zhongli dugu nangong ximen baili huyan duanmu
    """.split()
)
